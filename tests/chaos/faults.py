"""The faults of the matrix. Each one shapes its round (`prepare`: processes, failpoint schedule)
and runs a seeded workload with the fault struck in the middle of it (`run`).

Every random choice comes from the round's `rng`, itself seeded from (matrix seed, fault, round),
so a seed printed with a failure replays the same schedule.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.platform.settings import dead_letter_topic
from tests.chaos import invariants
from tests.chaos.round import Round, unarmed
from tests.chaos.world import PROJECT_ROOT, Component, database_name, settings_env

WRITER_FAILPOINTS = (
    "writer.after_poll", "writer.before_write", "writer.before_commit", "writer.after_commit",
    "outbox.after_publish", "rebalance.assigned", "rebalance.revoked",
)  # fmt: skip
PROJECTOR_FAILPOINTS = ("projector.before_commit", "projector.after_commit", "rebalance.assigned")
CRASHES_PER_ROUND = 3
CHUNKS = 8
SUBPROCESS_TIMEOUT_S = 300.0
SETTLE_WITH_DLT_DOWN_S = 60.0
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # the broker's default


class Fault:
    name = ""

    def prepare(self, chaos: Round) -> None:
        chaos.schedule = unarmed

    async def run(self, chaos: Round, events: int) -> None:
        await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS)


class NoFault(Fault):
    name = "none (control)"


@dataclass
class CrashSchedule:
    """Arms the next `left` starts of one kind of component with a random failpoint each."""

    kind: str
    names: tuple[str, ...]
    chaos: Round
    left: int = CRASHES_PER_ROUND

    def __call__(self, component: Component) -> str:
        if component.name != self.kind or self.left == 0:
            return ""
        self.left -= 1
        self.chaos.injected += 1  # armed; `crashes` counts the ones that fired
        name = self.chaos.rng.choice(self.names)
        # Rebalance callbacks run once or twice per start; batch points run per batch.
        count = 1 if name.startswith("rebalance.") else self.chaos.rng.randint(1, 6)
        return f"{name}:{count}"


class WriterKill9(Fault):
    name = "writer kill -9 at failpoints"

    def prepare(self, chaos: Round) -> None:
        chaos.schedule = CrashSchedule("writer", WRITER_FAILPOINTS, chaos)


class ProjectorKill9(Fault):
    name = "projector kill -9 at failpoints"

    def prepare(self, chaos: Round) -> None:
        chaos.schedule = CrashSchedule("projector", PROJECTOR_FAILPOINTS, chaos)


class ServerRestart(Fault):
    """One server restarted once, after a seeded chunk of the load."""

    server = ""

    async def run(self, chaos: Round, events: int) -> None:
        strike = chaos.rng.randrange(1, CHUNKS - 1)
        restart_server = getattr(chaos.world, f"restart_{self.server}")

        async def restart(index: int) -> None:
            if index == strike:
                chaos.injected += 1
                await asyncio.to_thread(restart_server)

        await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS, restart)


class BrokerRestart(ServerRestart):
    name = "broker restart under load"
    server = "kafka"


class PostgresRestart(ServerRestart):
    name = "postgres crash-restart under load"
    server = "postgres"


TERMINATE_ALL = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()"""
TERMINATE_IN_COMMIT = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active' AND query ILIKE 'commit%'"""


class DroppedConnections(Fault):
    name = "postgres connections dropped"
    statement = TERMINATE_ALL
    strikes = 12

    async def run(self, chaos: Round, events: int) -> None:
        done = asyncio.Event()
        dropper = asyncio.create_task(self._drop(chaos, done))
        try:
            await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS, _nothing)
        finally:
            done.set()
            await dropper

    async def _drop(self, chaos: Round, done: asyncio.Event) -> None:
        admin = await asyncpg.connect(chaos.world.servers.database_url)
        database = database_name(chaos.settings)
        pauses_s = [chaos.rng.uniform(0.0, 0.25) for _ in range(self.strikes)]
        try:
            for pause_s in pauses_s:
                while not done.is_set():  # bounded by the load: `done` ends it
                    if await admin.fetchval(self.statement, database):
                        chaos.injected += 1
                        break
                    await asyncio.sleep(0.002)
                await asyncio.sleep(pause_s)
        finally:
            await admin.close()


class KilledInCommit(DroppedConnections):
    name = "postgres connection killed during COMMIT"
    statement = TERMINATE_IN_COMMIT
    strikes = 8


async def _nothing(_: int) -> None:
    return None


class DuplicateDelivery(Fault):
    name = "duplicate delivery 2-5x, across a restart"

    async def run(self, chaos: Round, events: int) -> None:
        originals = chaos.usage_events(events // 3)
        copies = [e for e in originals for _ in range(chaos.rng.randint(1, 4))]
        chaos.rng.shuffle(copies)
        await chaos.publish_in_chunks(originals, CHUNKS // 2)
        chaos.kill9(chaos.writers[0])
        await chaos.publish_in_chunks(copies, CHUNKS // 2, _nothing)


class ChangedPayload(Fault):
    name = "same id, changed payload"

    async def run(self, chaos: Round, events: int) -> None:
        originals = chaos.usage_events(events)
        await chaos.publish_in_chunks(originals, CHUNKS, _nothing)
        for event in chaos.rng.sample(originals, max(1, events // 20)):
            changed = {**event, "credits": event["credits"] + 1}
            topic = chaos.settings.usage_topic
            value = json.dumps(changed).encode()
            await chaos.publisher.dead(topic, event["account_id"], value, "request-id-reused")
            chaos.injected += 1


class LateAndFutureEvents(Fault):
    name = "late (days old), out-of-order and future events"

    async def run(self, chaos: Round, events: int) -> None:
        late = chaos.usage_events(events, max_age=timedelta(days=30))
        await chaos.publish_in_chunks(late, CHUNKS, _nothing)
        for event in chaos.usage_events(max(1, events // 30)):
            ahead = timedelta(seconds=chaos.rng.randint(3600, 86_400 * 365))
            event["occurred_at"] = (chaos.now + ahead).isoformat()
            value = json.dumps(event).encode()
            topic = chaos.settings.usage_topic
            await chaos.publisher.dead(topic, event["account_id"], value, "occurred-in-future")
            chaos.injected += 1


class HotAccount(Fault):
    name = "hot account: concurrent grants, holds, consumes"

    async def run(self, chaos: Round, events: int) -> None:
        hot = chaos.accounts[0]
        consumes = chaos.usage_events(events, accounts=[hot])
        await asyncio.gather(
            chaos.publish_in_chunks(consumes, CHUNKS, _nothing),
            self._grants(chaos, hot, events // 40),
            self._holds(chaos, hot, events // 20),
        )

    async def _grants(self, chaos: Round, hot: str, count: int) -> None:
        for _ in range(count):
            amount = chaos.rng.randint(1, 10_000)
            await chaos.publisher.command(chaos.grant(hot, amount), balance_delta=amount)
            chaos.injected += 1

    async def _holds(self, chaos: Round, hot: str, count: int) -> None:
        for _ in range(count):
            hold_id, amount = chaos.command_id("hold"), chaos.rng.randint(1, 500)
            occurred = chaos.now.isoformat()
            expires = (chaos.now + timedelta(days=30)).isoformat()
            base = {"account_id": hot, "hold_id": hold_id, "occurred_at": occurred}
            await chaos.publisher.command(
                {**base, "type": "hold", "command_id": chaos.command_id("h"), "amount": amount,
                 "expires_at": expires}
            )  # fmt: skip
            if chaos.rng.random() < 0.5:
                captured = chaos.rng.randint(0, amount)
                await chaos.publisher.command(
                    {**base, "type": "capture", "command_id": chaos.command_id("c"),
                     "amount": captured, "request_id": chaos.command_id("capreq"),
                     "endpoint": "POST /v1/batch"}, balance_delta=-captured,
                )  # fmt: skip
            else:
                await chaos.publisher.command(
                    {**base, "type": "release", "command_id": chaos.command_id("r")}
                )
            chaos.injected += 1


class ThreeWritersRebalancing(Fault):
    name = "3 writers joining and leaving under load"

    def prepare(self, chaos: Round) -> None:
        super().prepare(chaos)
        chaos.writers = [Component(chaos.settings, "writer") for _ in range(3)]

    async def run(self, chaos: Round, events: int) -> None:
        async def churn(_: int) -> None:
            leaving = chaos.rng.choice(chaos.writers)
            if chaos.rng.random() < 0.5:
                chaos.kill9(leaving)  # the supervisor starts it again: leave, then join
            else:
                chaos.injected += 1
                await leaving.stop()  # a clean leave; started again below: a join
                await leaving.start()

        await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS, churn)


class RebuildAndReplayLive(Fault):
    name = "projection rebuild and replay while live"

    async def run(self, chaos: Round, events: int) -> None:
        strike = chaos.rng.randrange(1, CHUNKS - 1)

        async def rebuild(index: int) -> None:
            if index == strike:
                chaos.injected += 1
                await _cli(chaos, "projections", "rebuild")

        await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS, rebuild)
        target = f"{database_name(chaos.settings)}_replay"
        admin = await asyncpg.connect(chaos.world.servers.database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{target}"')
            url = chaos.settings.database_url.rsplit("/", 1)[0] + "/" + target  # type: ignore[union-attr]
            chaos.injected += 1
            await _cli(chaos, "replay", "--target-database-url", url, "--manifest", "/dev/null")
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            await admin.close()


async def _cli(chaos: Round, *args: str) -> None:
    """`creditledger <args>` against the round's namespace; it must exit 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=settings_env(chaos.settings),
        cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), SUBPROCESS_TIMEOUT_S)
    if process.returncode != 0:
        chaos.unexpected.append(f"creditledger {' '.join(args)}: {output.decode()[-800:]!r}")


class PoisonMessages(Fault):
    name = "poison messages"

    async def run(self, chaos: Round, events: int) -> None:
        normal = chaos.usage_events(events)
        await chaos.publish_in_chunks(normal, CHUNKS, _nothing)
        usage, commands = chaos.settings.usage_topic, chaos.settings.commands_topic
        victim = chaos.accounts[1]
        valid = chaos.usage_events(1, accounts=[victim])[0]
        poison: list[tuple[str, str | None, bytes | None, str]] = [
            (usage, victim, b"{not json", "malformed-json"),
            (usage, victim, b"", "malformed-json"),
            (usage, victim, None, "malformed-json"),
            (usage, victim, b"\x00\xff\xfe" * 100, "malformed-json"),
            (usage, victim, b'{"account_id": "x"}', "schema-invalid"),
            (usage, victim, json.dumps({**valid, "credits": -5}).encode(), "schema-invalid"),
            (usage, victim, json.dumps({**valid, "status_code": "200; DROP TABLE"}).encode(),
             "schema-invalid"),
            (usage, "someone_else", json.dumps(valid).encode(), "key-mismatch"),
            (usage, None, b"[]", "schema-invalid"),
            (commands, victim, b'{"type": "grant"}', "schema-invalid"),
            (commands, victim, json.dumps({"type": "teleport", "account_id": victim}).encode(),
             "schema-invalid"),
            (commands, victim, b"\xc3\x28", "malformed-json"),
        ]  # fmt: skip
        for topic, key, value, code in poison:
            await chaos.publisher.dead(topic, key, value, code)
            chaos.injected += 1
        await chaos.publish_in_chunks(chaos.usage_events(events // 4), 2, _nothing)


class DeadLetterTopicUnavailable(Fault):
    name = "dead-letter topic refusing writes"

    async def run(self, chaos: Round, events: int) -> None:
        usage = chaos.settings.usage_topic
        victim = chaos.accounts[2]
        await chaos.publish_in_chunks(chaos.usage_events(events // 2), CHUNKS // 2, _nothing)
        await _dead_letter_topics_accept(chaos, max_bytes=1)  # every dead letter is too large
        chaos.injected += 1
        for n in range(chaos.rng.randint(3, 8)):
            await chaos.publisher.dead(usage, victim, f"not json {n}".encode(), "malformed-json")
        await chaos.publish_in_chunks(chaos.usage_events(events // 2), CHUNKS // 2, _nothing)
        # While the DLT refuses, the ledger must keep flowing to the projections.
        behind = await invariants.settle_views(chaos.pool, SETTLE_WITH_DLT_DOWN_S)
        if behind:
            chaos.unexpected.append(f"ledger stalled while the DLT refused: {behind}")
        await _dead_letter_topics_accept(chaos, max_bytes=DEFAULT_MAX_MESSAGE_BYTES)


async def _dead_letter_topics_accept(chaos: Round, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=chaos.settings.kafka_bootstrap)
    await admin.start()
    try:
        topics = [chaos.settings.usage_topic, chaos.settings.commands_topic]
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, dead_letter_topic(topic),
                           configs={"max.message.bytes": str(max_bytes)})
            for topic in topics
        ])  # fmt: skip
    finally:
        await admin.close()


FAULTS: tuple[Fault, ...] = (
    NoFault(), WriterKill9(), ProjectorKill9(), BrokerRestart(), PostgresRestart(),
    DroppedConnections(), KilledInCommit(), DuplicateDelivery(), ChangedPayload(),
    LateAndFutureEvents(), HotAccount(), ThreeWritersRebalancing(), RebuildAndReplayLive(),
    PoisonMessages(), DeadLetterTopicUnavailable(),
)  # fmt: skip
BY_NAME = {f.name: f for f in FAULTS}
