"""Ingest with the supply out of the way (issue 14): writer and projector are stopped, all N
usage events are pre-loaded into the usage topic, then both start again and the clock runs from
their start until every read model has caught up. What the bench's own producer can offer no
longer bounds the figure; `startup_s` says how much of the timing is start-up (process start
until the writer's stored offsets first move)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from services.bench import processes, statements
from services.bench.namespace import create_namespace, drop_namespace
from services.bench.profile import Sampler
from services.bench.workload import (
    Tally,
    account_id,
    consumed_records,
    deadline_s,
    fast_producer,
    grant_message,
    ledger_exact,
    produce,
    projected_offsets,
    usage_message,
    wait_caught_up,
)
from services.platform.postgres import create_pool
from services.platform.settings import Settings

PIPELINE = ("writer", "projector")  # what is stopped and restarted around the pre-load
FIRST_MOVE_POLL_S = 0.01  # the resolution of `startup_s`
MIN_SPAN_S = 0.01  # a span shorter than the polls that measure it is the polls' resolution
MEMORY_SAMPLE_S = 0.25


@dataclass
class Pipeline:
    """One namespace's components as processes; writer and projector can be restarted (the
    dict then holds the new processes, so whoever reads it later follows the new pids)."""

    settings: Settings
    log_dir: Path
    components: dict[str, processes.Component] = field(default_factory=dict)

    async def start(self, names: Iterable[str] = PIPELINE) -> None:
        self.components.update(await processes.start(self.settings, names, self.log_dir))

    async def stop(self, names: Iterable[str] = PIPELINE) -> None:
        await processes.stop([self.components[n] for n in names])

    async def close(self) -> None:
        await processes.stop(list(self.components.values()))

    def check_alive(self) -> None:
        for component in self.components.values():
            component.check_alive()


async def grant_all(
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    pipeline: Pipeline,
    tally: Tally,
    accounts: int,
    amount: int,
) -> list[str]:
    """One grant per account, applied (not timed); returns the accounts' ids."""
    settings = pipeline.settings
    names = [account_id(a) for a in range(accounts)]
    await produce(producer, settings.commands_topic, (grant_message(a, amount) for a in names))
    tally.granted.update({a: amount for a in names})
    tally.records += accounts
    await wait_caught_up(pool, settings, tally.records, deadline_s(accounts), pipeline.check_alive)
    return names


class MemorySampler:
    """RSS of each component every 0.25 s during ingest: the sample when it had processed half
    the events and the last one, to show whether resident memory grows with N. The projector's
    half is its own (ledger offsets projected), not the writer's: it trails the writer, so at
    the writer's half it had done less than half. Reads the pids from the pipeline's dict at
    each sample, so it follows restarted processes."""

    def __init__(self, components: dict[str, processes.Component]) -> None:
        self.components = components
        self.at_half: dict[str, int] = {}
        self.at_end: dict[str, int] = {}

    async def run(
        self, pool: asyncpg.Pool, settings: Settings, half: int, stop: asyncio.Event
    ) -> None:
        writer_half = False  # the writer (and the API beside it) sampled at the writer's half
        while not stop.is_set():
            rss = {n: processes.memory_kb(c.pid)[0] for n, c in self.components.items()}
            if not writer_half and await consumed_records(pool, settings) >= half:
                writer_half = True
                self.at_half.update((n, kb) for n, kb in rss.items() if n != "projector")
            # A usage event is one ledger entry, a grant one: offsets count as records do.
            if (
                "projector" in rss
                and "projector" not in self.at_half
                and await projected_offsets(pool, settings) >= half
            ):
                self.at_half["projector"] = rss["projector"]
            self.at_end = rss
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_S)
        for name, kb in self.at_end.items():
            # Ingest ended between two samples (a small N): the half sample is the last one.
            self.at_half.setdefault(name, kb)

    def figures(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, component in self.components.items():
            rss_kb, peak_kb = processes.memory_kb(component.pid)
            out[name] = {
                "rss_at_half_mb": round(self.at_half.get(name, 0) / 1024),
                "rss_at_end_mb": round(self.at_end.get(name, rss_kb) / 1024),
                "peak_mb": round(peak_kb / 1024),  # VmHWM since the process (re)started
            }
        return out


class Watch:
    """What runs beside the timed ingest, started once the restarted processes exist: the CPU
    meter and, when asked, the memory sampler and py-spy on writer and projector."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        half_records: int | None = None,
        profile_dir: Path | None = None,
    ) -> None:
        self.pool, self.settings = pool, settings
        self.half_records, self.profile_dir = half_records, profile_dir
        self.memory: MemorySampler | None = None
        self.samplers: dict[str, Sampler] = {}
        self.cpu_cores: dict[str, float] = {}
        self._cpu: processes.CpuMeter | None = None
        self._done = asyncio.Event()
        self._sampling: asyncio.Task[None] | None = None

    async def start(self, components: dict[str, processes.Component]) -> None:
        if self.half_records is not None:
            self.memory = MemorySampler(components)
            run = self.memory.run(self.pool, self.settings, self.half_records, self._done)
            self._sampling = asyncio.create_task(run)
        if self.profile_dir is not None:
            for name in PIPELINE:
                self.samplers[name] = Sampler(name, components[name].pid, self.profile_dir)
                await self.samplers[name].start()
        self._cpu = processes.CpuMeter(components)

    async def stop(self) -> None:
        if self._cpu is not None:
            self.cpu_cores = self._cpu.cores()
        self._done.set()
        if self._sampling is not None:
            await self._sampling
        for sampler in self.samplers.values():
            await sampler.stop()


@dataclass(frozen=True)
class Timing:
    """One pre-loaded ingest, in monotonic seconds."""

    events: int
    produce_s: float
    started: float  # writer and projector spawned
    first_applied: float  # the writer's stored offsets first moved
    caught_up: float  # every read model caught up

    @property
    def per_s(self) -> float:
        return self.events / max(self.caught_up - self.started, MIN_SPAN_S)

    def figures(self, suffix: str = "") -> dict[str, float]:
        after_start_s = max(self.caught_up - self.first_applied, MIN_SPAN_S)
        return {
            f"produce_events_per_s{suffix}": round(self.events / max(self.produce_s, MIN_SPAN_S)),
            f"ingest_events_per_s{suffix}": round(self.per_s, 1),
            f"ingest_seconds{suffix}": round(self.caught_up - self.started, 2),
            f"ingest_startup_s{suffix}": round(self.first_applied - self.started, 2),
            f"ingest_events_per_s_after_start{suffix}": round(self.events / after_start_s, 1),
        }


async def timed_ingest(
    pipeline: Pipeline,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    tally: Tally,
    names: list[str],
    events: int,
    watch: Watch,
) -> Timing:
    """Stop writer and projector, pre-load `events` usage events over `names` (timed only as
    the producer's rate), start both again and wait until everything caught up."""
    settings = pipeline.settings
    await pipeline.stop()
    tally.used.update(names[n % len(names)] for n in range(events))
    messages = (usage_message(names[n % len(names)], f"bench-{n}") for n in range(events))
    producing = time.monotonic()
    await produce(producer, settings.usage_topic, messages)
    produce_s = time.monotonic() - producing
    tally.records += events
    deadline = deadline_s(events)
    baseline = await consumed_records(pool, settings)
    started = time.monotonic()
    moved = asyncio.create_task(_first_move(pool, settings, baseline, started + deadline))
    try:
        await pipeline.start()
        await watch.start(pipeline.components)
        try:
            done = await wait_caught_up(
                pool, settings, tally.records, deadline, pipeline.check_alive
            )
        finally:
            await watch.stop()
        # Caught up means the offsets moved: the poller has seen it or does at its next poll.
        first = await asyncio.wait_for(moved, deadline)
    finally:
        moved.cancel()
    return Timing(events, produce_s, started, min(first, done), done)


async def _first_move(
    pool: asyncpg.Pool, settings: Settings, baseline: int, deadline: float
) -> float:
    """The monotonic time the writer's stored offsets first went past `baseline`."""
    while await consumed_records(pool, settings) <= baseline:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the writer applied nothing past offset sum {baseline}")
        await asyncio.sleep(FIRST_MOVE_POLL_S)
    return time.monotonic()


async def accounts_phase(
    settings_base: Settings, events: int, accounts: int, amount: int, log_dir: Path
) -> dict[str, Any]:
    """The same pre-loaded ingest of `events` on a namespace of its own over `accounts`
    accounts (granted first): figures suffixed `_10x_accounts`, its ledger checked exact."""
    suffix = "_10x_accounts"
    settings = await create_namespace(settings_base, accounts)
    assert settings.database_url is not None and settings.kafka_bootstrap is not None
    tally = Tally()
    profile: dict[str, Any] = {}  # Postgres's statements during the timed ingest
    statements_note: str | None = None
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    try:
        async with AsyncExitStack() as stack:
            pool = await create_pool(settings.database_url, 4)
            stack.push_async_callback(pool.close)
            producer = fast_producer(settings)
            await producer.start()
            stack.push_async_callback(producer.stop)
            pipeline = Pipeline(settings, log_dir)
            stack.push_async_callback(pipeline.close)
            await pipeline.start()
            names = await grant_all(producer, pool, pipeline, tally, accounts, amount)
            watch = Watch(pool, settings)
            statements_note = await statements.start(pool)
            timing = await timed_ingest(pipeline, pool, producer, tally, names, events, watch)
            if statements_note is None:
                statements_note = await statements.top_into(
                    pool, profile, f"postgres_statements_ingest{suffix}"
                )
            exact = await ledger_exact(pool, tally.expected_balances())
    finally:
        await drop_namespace(settings_base, settings)
    if statements_note is not None:
        profile[f"postgres_statements_note{suffix}"] = statements_note
    return {
        **timing.figures(suffix),
        **profile,
        "accounts_10x": accounts,
        f"cpu_cores_ingest{suffix}": watch.cpu_cores,
        f"ledger_exact{suffix}": exact,
    }
