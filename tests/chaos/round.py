"""One round of one fault: a fresh namespace, the three components as supervised processes, a
seeded workload published through the oracle, the fault, then the seven invariants.

The supervisor plays systemd: a component that exits is started again. An exit at a failpoint
or by our kill -9 is a crash the fault asked for; any other exit is reported as unexpected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.platform.kafka import new_producer
from services.platform.offsets import SKIPPED_LINE
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.writer.gaps import READ_AGAIN_LINE
from tests.chaos import invariants, poller
from tests.chaos.oracle import Publisher
from tests.chaos.world import Component, World, drop_namespace, free_port, new_namespace

GRANT_CREDITS = 1_000_000_000  # ample: every successful call is charged in full
GRANTS_EFFECTIVE_FROM = datetime(2020, 1, 1, tzinfo=UTC)
SUPERVISE_INTERVAL_S = 0.1
API_START_DEADLINE_S = 60.0
SETTLE_DEADLINE_S = 240.0
ENDPOINT = "POST /v1/scanner/scan"
# What services/platform/offsets.py `count_skipped` and the writer's re-read log.
PASSED_OVER, READ_AGAIN = SKIPPED_LINE, READ_AGAIN_LINE
FailpointSchedule = Callable[[Component], str]  # the failpoints for a component's next start


def unarmed(_: Component) -> str:
    return ""


@dataclass
class RoundReport:
    fault: str
    seed: str
    verdicts: list[invariants.Verdict] = field(default_factory=list)
    records_published: int = 0
    in_flight_max: int = 0  # input records not yet committed when a fault struck, at most
    injected: int = 0  # how many times the fault actually struck
    crashes: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    sends_retried: int = 0
    # The processes' own logs: batches that passed over offsets (records never applied; our
    # producers make no gap) and writer batches read again for one (a position that ran ahead).
    offsets_passed_over: list[str] = field(default_factory=list)
    gap_rereads: int = 0

    @property
    def held(self) -> bool:
        return all(v.held for v in self.verdicts) and len(self.verdicts) == 7


class Round:
    def __init__(self, world: World, settings: Settings, rng: random.Random, accounts: int):
        self.world, self.settings, self.rng = world, settings, rng
        self.accounts = [f"chaos_{n:02d}" for n in range(accounts)]
        self.now = datetime.now(UTC)
        self.api_port = free_port()
        self.api = Component(settings, "api", api_port=self.api_port)
        self.projectors = [Component(settings, "projector")]
        self.writers = [Component(settings, "writer")]
        self.schedule: FailpointSchedule = unarmed
        self.injected = 0
        self.in_flight_max = 0
        self.crashes = 0
        self.unexpected: list[str] = []
        self._supervising = True
        self._serial = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def components(self) -> list[Component]:
        return [self.api, *self.projectors, *self.writers]

    # --- the workload -----------------------------------------------------------------------

    def usage_events(self, count: int, *, max_age: timedelta = timedelta(hours=1),
                     accounts: list[str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Seeded calls; event times spread over `max_age` before now, so out of order."""
        chosen = accounts or self.accounts
        events = []
        for _ in range(count):
            self._serial += 1
            age_s = self.rng.uniform(0, max_age.total_seconds())
            events.append({
                "request_id": f"req-{self._serial}-{self.rng.getrandbits(32):08x}",
                "account_id": self.rng.choice(chosen), "key_id": "key_chaos",
                "endpoint": ENDPOINT, "status_code": self.rng.choice((200, 200, 200, 404, 503)),
                "credits": self.rng.randint(0, 9), "latency_ms": self.rng.randint(1, 900),
                "occurred_at": (self.now - timedelta(seconds=age_s)).isoformat(),
            })  # fmt: skip
        return events

    def command_id(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}-{self._serial}"

    def grant(self, account_id: str, amount: int = GRANT_CREDITS) -> dict[str, Any]:
        return {
            "type": "grant", "command_id": self.command_id("grant"), "account_id": account_id,
            "amount": amount, "occurred_at": GRANTS_EFFECTIVE_FROM.isoformat(),
            "effective_at": GRANTS_EFFECTIVE_FROM.isoformat(),
        }  # fmt: skip

    async def publish_in_chunks(
        self, events: list[dict[str, Any]], chunks: int,
        between: Callable[[int], Any] | None = None,
    ) -> None:  # fmt: skip
        """Publish in `chunks` parts; `between(i)` (the fault) runs after part i."""
        size = max(1, -(-len(events) // chunks))
        for index, start in enumerate(range(0, len(events), size)):
            await self.publisher.usage_batch(events[start : start + size])
            if between is not None:
                await self.note_in_flight()
                await between(index)

    async def note_in_flight(self) -> None:
        with contextlib.suppress(Exception):  # Postgres may be down right now: no sample
            self.in_flight_max = max(
                self.in_flight_max, await invariants.in_flight(self.pool, self.settings)
            )

    # --- processes --------------------------------------------------------------------------

    async def start_components(self) -> None:
        for component in self.components:
            await component.start(self.schedule(component))
        await poller.wait_for_api(self.base_url, API_START_DEADLINE_S)

    async def _supervise(self) -> None:
        while self._supervising:
            for component in self.components:
                code = await component.reap()
                if code is None or component.stopping or not self._supervising:
                    continue
                if component.exited_unexpectedly:
                    self.unexpected.append(
                        f"{component.name} exited {code}: {component.stderr_tail(600)!r}"
                    )
                else:
                    self.crashes += 1
                    await self.note_in_flight()  # what the crash left uncommitted
                await component.start(self.schedule(component))
            await asyncio.sleep(SUPERVISE_INTERVAL_S)

    def kill9(self, component: Component) -> None:
        component.kill9()
        self.injected += 1

    # --- accounts and keys ------------------------------------------------------------------

    async def open_accounts(self) -> dict[str, str]:
        """Accounts and customer keys through the admin API; a grant each through Kafka."""
        admin = {"Authorization": f"Bearer {self.settings.admin_token}"}
        keys = {}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            for account_id in self.accounts:
                created = await http.post(
                    "/v1/admin/accounts",
                    json={"account_id": account_id, "name": account_id},
                    headers=admin,
                )
                assert created.status_code in (200, 201), created.text
                key = await http.post(f"/v1/admin/accounts/{account_id}/keys", headers=admin)
                assert key.status_code == 201, key.text
                keys[account_id] = key.json()["secret"]
        for account_id in self.accounts:
            await self.publisher.command(self.grant(account_id), balance_delta=GRANT_CREDITS)
        return keys

    # --- the round --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RoundReport]:
        report = RoundReport("", "")
        assert self.settings.database_url is not None and self.settings.kafka_bootstrap
        self.pool = await create_pool(self.settings.database_url, max_size=4)
        producer = new_producer(self.settings)
        await producer.start()
        self.publisher = Publisher(self.settings, producer)
        supervisor: asyncio.Task[None] | None = None
        try:
            await self.start_components()
            supervisor = asyncio.create_task(self._supervise())
            keys = await self.open_accounts()
            watcher = poller.Poller(self.base_url, dict(list(keys.items())[:3]))
            watcher.start()
            yield report
            await self._judge(report, watcher)
        finally:
            self._supervising = False
            if supervisor is not None:
                await supervisor
            for component in self.components:
                await component.stop()
                component.discard_log()
            await producer.stop()
            await self.pool.close()

    async def _judge(self, report: RoundReport, watcher: poller.Poller) -> None:
        behind = await invariants.settle(self.pool, self.settings, SETTLE_DEADLINE_S)
        log = await watcher.stop()
        if behind:
            report.unexpected_exits.append(f"did not settle: {behind[:3]}")
        report.verdicts = await invariants.check(self.pool, self.settings, self.publisher.expect)
        report.verdicts += await poller.judge(self.pool, log)
        report.verdicts.sort(key=lambda v: v.invariant)
        report.records_published = self.publisher.published
        report.sends_retried = self.publisher.expect.sends_retried
        report.in_flight_max, report.injected = self.in_flight_max, self.injected
        report.crashes = self.crashes
        report.unexpected_exits += self.unexpected
        for component in self.components:
            lines = component.log_lines()
            report.offsets_passed_over += [line[:300] for line in lines if PASSED_OVER in line]
            report.gap_rereads += sum(READ_AGAIN in line for line in lines)


async def run_round(
    world: World, fault: Any, seed: str, events: int, keep_failed: bool = False,
    **overrides: object,
) -> RoundReport:  # fmt: skip
    rng = random.Random(seed)
    settings = await new_namespace(world, batch_max_records=rng.choice((20, 50, 200)), **overrides)
    held = False
    try:
        chaos = Round(world, settings, rng, accounts=6)
        fault.prepare(chaos)
        async with chaos.running() as report:
            await fault.run(chaos, events)
        report.fault, report.seed = fault.name, seed
        held = report.held
        return report
    finally:
        if held or not keep_failed:
            await drop_namespace(world, settings)
        else:
            print(f"    kept for a look: {settings.database_url}", flush=True)
