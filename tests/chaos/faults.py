"""The faults of the matrix. Each one shapes its round (`prepare`: processes, failpoint schedule)
and runs a seeded workload with the fault struck in the middle of it (`run`).

Every random choice comes from the round's `rng`, itself seeded from (matrix seed, fault, round),
so a seed printed with a failure replays the same schedule.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import hypothesis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.core.pricing import DEFAULT_PRICE_BOOK
from services.platform.kafka import ensure_topics
from services.platform.settings import Settings, dead_letter_topic
from services.platform.topic_metadata import describe_topics
from services.writer.decoding import DeadLetterCode, Rejected, decode_command, decode_usage
from services.writer.plan import home_partition
from tests.chaos import invariants
from tests.chaos.round import GRANTS_EFFECTIVE_FROM, Round, unarmed
from tests.chaos.world import PROJECT_ROOT, Component, database_name, settings_env
from tests.unit.test_writer_plan import ACCOUNT as FUZZED_ACCOUNT
from tests.unit.test_writer_poison import fuzz_record

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
TOPIC_GONE_DEADLINE_S = 60.0
FUZZ_MIN_RECORDS = 40
FUZZ_CALLS_BEHIND = 3  # valid calls of the poisoned account after each slice of poison


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


class TopicRecreated(Fault):
    """An operator deletes an input topic and creates it again (`ensure_topics`, the contract's
    settings) while the pipeline runs, and producers go on publishing to it.

    What the old incarnation held but the writer had not consumed yet is lost by Kafka itself,
    by the operator's hand, and no consumer could get it back. So the round pauses publishing,
    waits until the pipeline has consumed everything (settled: stored offsets at the old logs'
    ends, outbox empty, views at the writer's seq), deletes and re-creates the topic, then
    publishes the rest. The oracle then counts every record the round published: each must be
    applied exactly once, none skipped (the new incarnation starts at offset 0, far below the
    offsets stored for the old one) and none doubled (the old records are gone from Kafka, and
    the grants and calls published afterwards carry new ids). I4 compares the stored offsets with
    the new incarnation's ends."""

    name = "input topic deleted and re-created"

    async def run(self, chaos: Round, events: int) -> None:
        topic = chaos.rng.choice((chaos.settings.usage_topic, chaos.settings.commands_topic))
        first = events // 2
        await chaos.publish_in_chunks(chaos.usage_events(first), CHUNKS // 2, _nothing)
        await _small_grants(chaos)  # the commands topic too holds more than the opening grants
        behind = await invariants.settle(chaos.pool, chaos.settings, SUBPROCESS_TIMEOUT_S)
        if behind:
            chaos.unexpected.append(f"did not settle before the deletion: {behind[:3]}")
        await chaos.note_in_flight()  # 0 when settled: nothing of the old incarnation is lost
        await _recreate(chaos.settings, topic)
        chaos.injected += 1
        rest = chaos.usage_events(events - first)
        await chaos.publish_in_chunks(rest, CHUNKS // 2, _nothing)
        await _small_grants(chaos)


async def _small_grants(chaos: Round) -> None:
    for account in chaos.accounts:
        amount = chaos.rng.randint(1, 1000)
        await chaos.publisher.command(chaos.grant(account, amount), balance_delta=amount)


async def _recreate(settings: Settings, topic: str) -> None:
    """Delete `topic`, wait until the broker no longer has it, create it again (ensure_topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + TOPIC_GONE_DEADLINE_S
        while topic in await describe_topics(admin._client, [topic]):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} still there {TOPIC_GONE_DEADLINE_S} s after delete")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    await ensure_topics(settings)


def librdkafka_partition(account_id: str, partitions: int) -> int:
    """librdkafka's default partitioner (`consistent_random`): CRC-32 of the key, modulo the
    partition count; kcat, confluent-kafka, the Go and Node clients use it."""
    return zlib.crc32(account_id.encode()) % partitions


class MisroutedProducer(Fault):
    """A share of the calls comes from a producer whose partitioner is not Kafka's murmur2
    (librdkafka's CRC-32; where that happens to agree with murmur2, another partition), while
    grants go where the admin API puts them. The writer must forward each misrouted call to its
    account's partition and apply it there once: the oracle is unchanged (each call charged once,
    every invariant), and the forwarded copies are input records like any other for I4.

    Order, which the ample grants' arithmetic cannot see, is checked apart: a grant Kafka
    acknowledged before a call was sent precedes that call on the account's partition, so it
    must precede it in the account's ledger (lower seq), wherever the call first landed. A
    writer that applied misrouted calls where they landed could apply them first."""

    name = "misrouted producer (librdkafka partitioner)"

    async def run(self, chaos: Round, events: int) -> None:
        partitions = chaos.settings.topic_partitions
        assert partitions > 1, "one partition: nothing can be misrouted"
        routes = {}
        for account in chaos.accounts:
            home, theirs = (
                home_partition(account, partitions),
                librdkafka_partition(account, partitions),
            )
            other = (home + chaos.rng.randrange(1, partitions)) % partitions
            routes[account] = theirs if theirs != home else other
        share = chaos.rng.uniform(0.3, 0.7)
        calls = chaos.usage_events(events)
        size = max(1, -(-len(calls) // CHUNKS))
        granted: list[tuple[str, str]] = []  # (account, command id), acknowledged so far
        after: dict[tuple[str, str], list[str]] = {}  # grant -> its account's later calls
        for start in range(0, len(calls), size):
            chunk = calls[start : start + size]
            for account, command_id in granted:
                later = after[(account, command_id)]
                later += [e["request_id"] for e in chunk if e["account_id"] == account]
            away = [chaos.rng.random() < share for _ in chunk]
            await asyncio.gather(*(
                chaos.publisher.usage(e, routes[e["account_id"]] if a else None)
                for e, a in zip(chunk, away, strict=True)
            ))  # fmt: skip
            chaos.injected += sum(away)
            await chaos.note_in_flight()
            # A grant between the chunks, on its account's partition, as the admin API sends it.
            account = chaos.rng.choice(chaos.accounts)
            amount = chaos.rng.randint(1, 1000)
            grant = chaos.grant(account, amount)
            await chaos.publisher.command(grant, balance_delta=amount)
            granted.append((account, grant["command_id"]))
            after[(account, grant["command_id"])] = []
        await _check_grants_first(chaos, after)


FIRST_SEQ = """SELECT account_id, source, min(seq) AS seq FROM ledger_entries
WHERE source LIKE 'grant:%' OR source LIKE 'request:%' GROUP BY 1, 2"""


async def _check_grants_first(chaos: Round, after: dict[tuple[str, str], list[str]]) -> None:
    """Each grant's entry precedes, in its account's ledger, the calls sent after Kafka
    acknowledged it (a call of zero credits may have no entry: nothing to order)."""
    behind = await invariants.settle(chaos.pool, chaos.settings, SUBPROCESS_TIMEOUT_S)
    if behind:
        return  # the round's own settle reports it
    seqs = {(r["account_id"], r["source"]): r["seq"] for r in await chaos.pool.fetch(FIRST_SEQ)}
    early = []
    for (account, command_id), request_ids in after.items():
        grant_seq = seqs.get((account, f"grant:{command_id}"))
        for request_id in request_ids:
            call_seq = seqs.get((account, f"request:{request_id}"))
            if grant_seq is not None and call_seq is not None and call_seq < grant_seq:
                early.append((account, command_id, request_id, grant_seq, call_seq))
    if early:
        chaos.unexpected.append(
            f"calls applied before a grant acknowledged before they were sent: {len(early)},"
            f" e.g. {early[:3]} (account, grant, request, grant seq, call seq)"
        )


FUZZ_ACCOUNT = json.dumps(FUZZED_ACCOUNT).encode()  # the account the fuzzer's records mostly name
FUZZ_MAX_CREDITS = 10_000  # a valid call the ample grants pay in full (the oracle's arithmetic)
FUZZ_SKEW_MARGIN = timedelta(minutes=5)  # clear of the future-skew bound, either side


def fuzzed_records(seed: int, count: int) -> list[tuple[str, bytes]]:
    """`count` records of tests/unit/test_writer_poison.py's fuzz strategy, drawn reproducibly
    from `seed`: (topic kind, raw bytes)."""
    drawn: list[tuple[str, bytes]] = []

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=count, database=None, deadline=None, phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip
    @hypothesis.given(fuzz_record())
    def draw(record: tuple[str, bytes]) -> None:
        drawn.append(record)

    draw()
    return drawn[:count]


@dataclass(frozen=True)
class FuzzOutcome:
    """What the oracle expects of one fuzzed record: a dead letter with `code`, or a call
    applied once netting `net` (`code` empty), or nothing at all (`skip`: not published)."""

    topic: str
    value: bytes
    code: str = ""
    request_id: str = ""
    net: int = 0
    skip: bool = False


def fuzz_outcome(chaos: Round, account: str, kind: str, value: bytes) -> FuzzOutcome:
    """The contract's verdict on a fuzzed record keyed by `account`.

    A fuzzer's record has no hand-written expected code, so the oracle takes it from the
    contract's decoder (a pure function of the bytes, never what the pipeline did): a record it
    refuses must be a dead letter with that code at its address. A call it accepts gets a fresh
    request id (the fuzzer's are all "fuzz") and must be applied once, charged in full if it
    succeeded, when the oracle's arithmetic covers it: explicit integer credits the ample grants
    pay, an instant since the grants are effective and clear of the future-skew bound (beyond
    it: `occurred-in-future`). A valid command, or a call outside that arithmetic (priced by the
    book, before 2020, huge), is left unpublished: its effect (a grant expiring, new settings)
    is the unit fuzz test's, not this oracle's."""
    key = account.encode()
    value = value.replace(FUZZ_ACCOUNT, json.dumps(account).encode())
    if kind != "usage":
        decoded = decode_command(key, value)
        topic = chaos.settings.commands_topic
        if isinstance(decoded, Rejected):
            return FuzzOutcome(topic, value, decoded.code.value)
        return FuzzOutcome(topic, value, skip=True)
    topic = chaos.settings.usage_topic
    first = decode_usage(key, value, DEFAULT_PRICE_BOOK)
    if isinstance(first, Rejected):
        return FuzzOutcome(topic, value, first.code.value)
    event = json.loads(value)
    credits, status = event.get("credits"), event.get("status_code")
    if type(credits) is not int or type(status) is not int or credits > FUZZ_MAX_CREDITS:
        return FuzzOutcome(topic, value, skip=True)
    request_id = chaos.command_id("fuzz-req")
    value = json.dumps({**event, "request_id": request_id}).encode()
    decoded = decode_usage(key, value, DEFAULT_PRICE_BOOK)
    if isinstance(decoded, Rejected):
        return FuzzOutcome(topic, value, skip=True)
    occurred = decoded.command.occurred_at
    bound = chaos.now + timedelta(seconds=chaos.settings.max_future_skew_s)
    if occurred > bound + FUZZ_SKEW_MARGIN:
        return FuzzOutcome(topic, value, DeadLetterCode.OCCURRED_IN_FUTURE.value)
    if occurred < GRANTS_EFFECTIVE_FROM or occurred > bound - FUZZ_SKEW_MARGIN:
        return FuzzOutcome(topic, value, skip=True)
    return FuzzOutcome(topic, value, request_id=request_id, net=-credits if status < 400 else 0)


class FuzzedPoison(Fault):
    """Records from the writer's hypothesis fuzz strategy (extreme instants and offsets, huge
    and negative numbers, deep nesting, odd unicode, wrong types, junk bytes), keyed by one
    account and interleaved with the workload, each slice followed by calls of that account on
    the same partition. Each must be a dead letter with the contract's code at the address Kafka
    acknowledged, or (valid) applied once (`fuzz_outcome`); the partition keeps flowing, so the
    calls behind the poison are charged, and the round settles (I1-I4)."""

    name = "poison from the fuzzer"

    async def run(self, chaos: Round, events: int) -> None:
        victim = chaos.accounts[3]
        drawn = fuzzed_records(chaos.rng.getrandbits(32), max(FUZZ_MIN_RECORDS, events // 10))
        outcomes = [fuzz_outcome(chaos, victim, kind, value) for kind, value in drawn]
        published = [o for o in outcomes if not o.skip]
        size = max(1, -(-len(published) // CHUNKS))
        slices = [published[start : start + size] for start in range(0, len(published), size)]

        async def poison(index: int) -> None:
            for outcome in slices[index] if index < len(slices) else []:
                if outcome.code:
                    await chaos.publisher.dead(outcome.topic, victim, outcome.value, outcome.code)
                else:
                    await chaos.publisher.raw_usage(
                        victim, outcome.value, outcome.request_id, outcome.net
                    )
                chaos.injected += 1
            behind = chaos.usage_events(FUZZ_CALLS_BEHIND, accounts=[victim])
            await chaos.publisher.usage_batch(behind)

        await chaos.publish_in_chunks(chaos.usage_events(events), CHUNKS, poison)


FAULTS: tuple[Fault, ...] = (
    NoFault(), WriterKill9(), ProjectorKill9(), BrokerRestart(), PostgresRestart(),
    DroppedConnections(), KilledInCommit(), DuplicateDelivery(), ChangedPayload(),
    LateAndFutureEvents(), HotAccount(), ThreeWritersRebalancing(), RebuildAndReplayLive(),
    PoisonMessages(), DeadLetterTopicUnavailable(), TopicRecreated(), MisroutedProducer(),
    FuzzedPoison(),
)  # fmt: skip
BY_NAME = {f.name: f for f in FAULTS}
