"""One bench run on a fresh namespace, with writer, projector and API as separate processes:
ingest of N pre-loaded events from the pipeline's restart (memory sampled at N/2 and N), the
machine's limits, the naive baseline, reads idle, a steady load (freshness, then reads under
it), a second steady load at a higher rate; then the same ingest over 10× the accounts on a
namespace of its own, and the rebuild of a large ledger made in SQL; figures, ratios and the
targets met or not, as one dict."""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from projections.rebuild import rebuild
from services.api.reads.balance import ACCOUNT_STATE
from services.api.reads.ledger import LEDGER_PAGE
from services.bench import limits, naive, processes, reads, statements, targets
from services.bench.ingest import Pipeline, Watch, accounts_phase, grant_all, timed_ingest
from services.bench.namespace import create_namespace, drop_namespace
from services.bench.probes import Freshness, SteadyLoad
from services.bench.profile import Sampler, machine
from services.bench.synthetic import generate_ledger
from services.bench.workload import (
    Tally,
    deadline_s,
    fast_producer,
    ledger_exact,
    wait_caught_up,
)
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.platform.stack import POSTGRES_SETTINGS
from services.runtime import COMPONENTS

GRANT = 1_000_000_000  # per account: no event is ever short of credits
ACCOUNTS_FACTOR = 10  # the scaling phase's accounts, relative to the run's
CONTRACT_KEYS = (
    "ingest_events_per_s", "ratio_vs_limit", "ratio_vs_naive", "freshness_p99_ms",
    "balance_reads_per_s", "balance_p99_ms", "rebuild_rows_per_s",
)  # fmt: skip
KEYED_ACCOUNTS = 64  # accounts the read load uses (one API key each), and pgbench draws from
PGBENCH_CLIENTS = 16
# The API's two SELECTs as pgbench runs them: the named queries, `$1` an account.
BALANCE_SCRIPT_PARAMS: dict[int, str] = {}
LEDGER_SCRIPT_PARAMS = {2: "NULL", 3: "NULL", 4: "NULL", 5: "NULL", 6: "101", 7: "0"}


@dataclass(frozen=True)
class ReadKind:
    name: str
    path: str
    sql: str | None  # what pgbench runs beside it; None: the same SELECT as `pgbench_of`'s
    params: dict[int, str]
    pgbench_of: str
    count_declined: bool = False
    at_rate: bool = False  # also sent at the target's rate, open loop (the targets' p99)


READ_KINDS = (
    # What /balance and /check read: the writer's account row (the API reads it through a
    # session function that also sets the row-level-security account; the row read is this).
    ReadKind(
        "balance", reads.BALANCE_PATH, ACCOUNT_STATE, BALANCE_SCRIPT_PARAMS, "balance", at_rate=True
    ),
    ReadKind("ledger", reads.LEDGER_PATH, LEDGER_PAGE, LEDGER_SCRIPT_PARAMS, "ledger"),
    # /check reads the balance row as /balance does: compared with that pgbench run, not a
    # second one (it would cost the same seconds and measure the same SELECT).
    ReadKind("check", reads.CHECK_PATH, None, {}, "balance", count_declined=True, at_rate=True),
)


@dataclass(frozen=True)
class Options:
    fresh_rate: float
    fresh_rate_high: float
    fresh_seconds: float
    read_seconds: int
    read_concurrency: int
    naive_sample: int
    profile_dir: Path | None
    phase: Callable[[str], None] = lambda name: None  # names each phase as it starts (progress)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours and theirs else None


async def postgres_settings(settings: Settings) -> dict[str, str]:
    """The server's values of the settings the local stack configures (stack.py): what this run
    measured on, whoever started the server."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            list(POSTGRES_SETTINGS),
        )
    finally:
        await conn.close()
    return {r["name"]: f"{r['setting']}{r['unit'] or ''}" for r in rows}


async def run_bench(
    settings_base: Settings,
    events: int,
    accounts: int,
    *,
    fresh_rate: float = 5000.0,
    fresh_rate_high: float = 15000.0,
    fresh_seconds: float = 10.0,
    read_seconds: int = 5,
    read_concurrency: int = 32,
    naive_sample: int = 20_000,
    rebuild_entries: int = 10_000_000,
    profile_dir: Path | None = None,
    keep_database: bool = False,
    phase: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    """The figures (CONTRACT_KEYS and more) and `targets`; `database_url` names the namespace's
    database, dropped at the end unless `keep_database`; `expected_balances` is what its
    ledger must hold."""
    assert events >= 1 and accounts >= 1 and rebuild_entries >= 1
    options = Options(fresh_rate, fresh_rate_high, fresh_seconds, read_seconds,
                      read_concurrency, naive_sample, profile_dir, phase)  # fmt: skip
    phase("creating the bench namespace")
    settings = await create_namespace(api_as_deployed(settings_base), accounts)
    result: dict[str, Any] = {"events": events, "accounts": accounts,
                              "partitions": settings.topic_partitions, "machine": machine(),
                              "api_workers": settings.api_workers,
                              "database_url": settings.database_url,
                              "postgres_settings": await postgres_settings(settings)}  # fmt: skip
    log_dir = Path(tempfile.mkdtemp(prefix="creditledger-bench-"))
    result["log_dir"] = str(log_dir)
    try:
        run = _Run(settings, events, accounts, options, result)
        await run.main_namespace(log_dir)
        result["profiles"] = {name: s.summary() for name, s in run.samplers.items()}
        if profile_dir is not None:
            result["profile_dir"] = str(profile_dir)

        # 5. The same ingest over 10× the accounts, on a namespace of its own (the main one's
        # processes are stopped by now: they would only compete for the two cores).
        many = ACCOUNTS_FACTOR * accounts
        phase(f"5. ingest over {many:,} accounts")
        result.update(await accounts_phase(settings_base, events, many, GRANT,
                                           log_dir / "accounts-10x"))  # fmt: skip
        result["ingest_scaling_10x_accounts"] = _ratio(
            result["ingest_events_per_s_10x_accounts"], result["ingest_events_per_s"]
        )

        # 6. Rebuild of a large ledger (made in SQL) next to a plain GROUP BY.
        phase(f"6. rebuild of {rebuild_entries:,} ledger rows")
        rebuild_deadline_s = max(600.0, rebuild_entries / 10_000)  # 10,000 rows/s is a failure
        result.update(
            await _rebuild_phase(settings_base, rebuild_entries, accounts, rebuild_deadline_s)
        )
        result["memory_mb"]["bench"] = {
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        }
        result["targets"] = targets.evaluate(result)
        result["expected_balances"] = run.tally.expected_balances()
        return result
    finally:
        if not keep_database:
            await drop_namespace(settings_base, settings)


# Each API worker opens a pool of its own (20 connections in the bench, all at start): four of
# them, the writer's, the projector's, the bench's and pgbench's stay well under the local
# stack's max_connections (200) on a machine of any size.
BENCH_API_WORKERS_MAX = 4


def api_as_deployed(base: Settings) -> Settings:
    """The API as a deployment on this machine runs it: one worker process per core, up to
    BENCH_API_WORKERS_MAX (services/api/workers.py), unless CREDITLEDGER_API_WORKERS says
    otherwise. One Python process serves on one core; the bench's rate limits are off, so the
    per-worker limits that make workers opt-in elsewhere do not matter here."""
    if "api_workers" in base.model_fields_set:
        return base
    workers = min(os.cpu_count() or 1, BENCH_API_WORKERS_MAX)
    return base.model_copy(update={"api_workers": workers})


class _Run:
    """Phases 1–4 on the run's namespace, sharing its processes, pool, producer and tally."""

    def __init__(
        self,
        settings: Settings,
        events: int,
        accounts: int,
        options: Options,
        result: dict[str, Any],
    ) -> None:
        self.settings, self.events, self.accounts = settings, events, accounts
        self.options, self.result = options, result
        self.tally = Tally()
        self.samplers: dict[str, Sampler] = {}
        self.ingest_per_s = 0.0  # phase 1's figure, the ratios' numerator

    async def main_namespace(self, log_dir: Path) -> None:
        assert self.settings.database_url is not None
        async with AsyncExitStack() as stack:
            pipeline = Pipeline(self.settings, log_dir)
            stack.push_async_callback(pipeline.close)
            await pipeline.start(COMPONENTS)
            pool = await create_pool(self.settings.database_url, 8)
            stack.push_async_callback(pool.close)
            producer = fast_producer(self.settings)
            await producer.start()
            stack.push_async_callback(producer.stop)
            phase = self.options.phase
            phase(f"1. ingest of {self.events:,} events over {self.accounts:,} accounts")
            watch = await self._ingest(pipeline, pool, producer)
            phase("2. the machine's limits (kcat, psql COPY)")
            await self._limits(pool)
            phase("3. the naive baseline")
            await self._naive(pool)
            phase("4. reads idle and under steady loads")
            await self._loads(pipeline, pool, producer)
            assert watch.memory is not None
            self.result["memory_mb"] = watch.memory.figures()
            exact = await ledger_exact(pool, self.tally.expected_balances())
            self.result["ledger_exact"] = exact

    async def _ingest(
        self, pipeline: Pipeline, pool: asyncpg.Pool, producer: AIOKafkaProducer
    ) -> Watch:
        """1. Grants (not timed), then N pre-loaded usage events timed from the restart."""
        names = await grant_all(producer, pool, pipeline, self.tally, self.accounts, GRANT)
        half = self.tally.records + self.events // 2
        watch = Watch(pool, self.settings, half_records=half,
                      profile_dir=self.options.profile_dir)  # fmt: skip
        statements_note = await statements.start(pool)
        timing = await timed_ingest(pipeline, pool, producer, self.tally, names, self.events, watch)
        if statements_note is None:
            statements_note = await statements.top_into(pool, self.result)
        if statements_note is not None:
            self.result["postgres_statements_note"] = statements_note
        self.samplers.update(watch.samplers)
        self.result.update(timing.figures())
        self.result["cpu_cores_ingest"] = watch.cpu_cores
        self.ingest_per_s = timing.per_s
        return watch

    async def _limits(self, pool: asyncpg.Pool) -> None:
        """2. The machine's limits for the same work."""
        settings, events, timeout = self.settings, self.events, deadline_s(self.events)
        kcat = await limits.kcat_read(settings, settings.usage_topic, events, timeout)
        copy = await limits.psql_copy(pool, settings, events, self.accounts, timeout)
        self.result["kcat_events_per_s"] = kcat.per_s and round(kcat.per_s)
        self.result["psql_copy_rows_per_s"] = copy.per_s and round(copy.per_s)
        if kcat.note or copy.note:
            self.result["limit_notes"] = "; ".join(n for n in (kcat.note, copy.note) if n)
        slower = min(r for r in (kcat.per_s, copy.per_s, float("inf")) if r)
        self.result["ratio_vs_limit"] = _ratio(self.ingest_per_s, slower)

    async def _naive(self, pool: asyncpg.Pool) -> None:
        """3. The naive baseline."""
        sample = min(self.events, self.options.naive_sample)
        naive_per_s = await naive.naive_rate(pool, sample, self.accounts, deadline_s=60.0)
        self.result["naive_events_per_s"] = round(naive_per_s, 1)
        self.result["naive_sample"] = sample
        self.result["ratio_vs_naive"] = _ratio(self.ingest_per_s, naive_per_s)

    async def _loads(
        self, pipeline: Pipeline, pool: asyncpg.Pool, producer: AIOKafkaProducer
    ) -> None:
        """4. Reads idle; a steady load: freshness first, reads under it after; then the
        higher steady load, for freshness only."""
        options, timeout = self.options, deadline_s(self.events)
        api = pipeline.components["api"].url
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            count = min(KEYED_ACCOUNTS, self.accounts)
            secrets = await reads.customer_keys(http, self.settings, count)
        read_args = (secrets, options.read_concurrency, options.read_seconds, len(secrets),
                     timeout)  # fmt: skip
        components = pipeline.components
        self.result.update(await _reads(self.settings, components, "idle", *read_args))
        fresh = await self._reads_under_load(pipeline, pool, producer, read_args)
        self.result.update(_freshness_figures(fresh))
        # The contract's names: the figures under the steady load (the targets' case): the
        # closed loop's capacity, and the p99 at the target's rate (None where oha measured
        # none: the closed loop's is a saturated machine's, another figure).
        for kind in ("balance", "check"):
            self.result[f"{kind}_reads_per_s"] = self.result[f"{kind}_reads_under_load_per_s"]
            self.result[f"{kind}_p99_ms"] = self.result.get(f"{kind}_under_load_at_rate_p99_ms")
        # A steady load starts from the writer's seqs: they must include everything sent.
        await wait_caught_up(pool, self.settings, self.tally.records, timeout,
                             pipeline.check_alive)  # fmt: skip
        cpu = processes.CpuMeter(pipeline.components)
        high = SteadyLoad(
            producer, pool, self.settings, self.tally, self.accounts, options.fresh_rate_high,
            options.fresh_seconds, max_seconds=options.fresh_seconds, request_prefix="steady-high",
        )  # fmt: skip
        self.result.update(_freshness_high_figures(await high.run()))
        self.result["cpu_cores_steady_at_15k"] = cpu.cores()
        await wait_caught_up(pool, self.settings, self.tally.records, timeout,
                             pipeline.check_alive)  # fmt: skip

    async def _reads_under_load(
        self,
        pipeline: Pipeline,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        read_args: tuple[list[str], int, int, int, float],
    ) -> Freshness:
        options, components = self.options, pipeline.components
        # Reads under load: three kinds, two of them beside pgbench, two at a rate, plus margin.
        reading_s = 8 * options.read_seconds + 120
        load = SteadyLoad(
            producer, pool, self.settings, self.tally, self.accounts, options.fresh_rate,
            options.fresh_seconds, max_seconds=options.fresh_seconds + reading_s,
        )  # fmt: skip
        sampling_cpu = processes.CpuMeter(components)
        # Postgres's statements over the freshness samples' window: the steady load's per-batch
        # work (one event per account per batch), which costs several times a backlog's.
        statements_note = await statements.start(pool)
        loading = asyncio.create_task(load.run())
        try:
            await load.sampled.wait()
            self.result["cpu_cores_freshness"] = sampling_cpu.cores()
            if statements_note is None:
                statements_note = await statements.top_into(
                    pool, self.result, "postgres_statements_freshness"
                )
            if statements_note is not None:
                self.result["postgres_statements_note_freshness"] = statements_note
            pipeline.check_alive()
            if options.profile_dir is not None:
                self.samplers["api"] = Sampler("api", components["api"].pid, options.profile_dir)
                await self.samplers["api"].start()
            cpu = processes.CpuMeter(components)
            self.result.update(await _reads(self.settings, components, "under_load", *read_args))
            self.result["cpu_cores_reads_under_load"] = cpu.cores()
            if "api" in self.samplers:
                await self.samplers["api"].stop()
        finally:
            load.stop.set()
            fresh = await loading
        return fresh


def _freshness_figures(fresh: Freshness) -> dict[str, Any]:
    return {
        "freshness_target_per_s": fresh.target_per_s,
        "freshness_achieved_per_s": round(fresh.achieved_per_s, 1),
        "freshness_samples": fresh.samples, "freshness_unseen": fresh.unseen,
        "freshness_p50_ms": round(fresh.p50_ms, 1),
        "freshness_p99_ms": round(fresh.p99_ms, 1),
        "freshness_max_ms": round(fresh.max_ms, 1),
        "projection_freshness_p50_ms": round(fresh.projection_p50_ms, 1),
        "projection_freshness_p99_ms": round(fresh.projection_p99_ms, 1),
        "projection_freshness_unseen": fresh.projection_unseen,
        "steady_load_events": fresh.sent,
    }  # fmt: skip


def _freshness_high_figures(fresh: Freshness) -> dict[str, Any]:
    """The higher load's figures; `_at_15k` names the issue's rate whatever `--fresh-rate-high`
    was (`fresh_target_per_s_at_15k` says what it was, `fresh_offered_per_s_at_15k` what one
    producer managed to send)."""
    return {
        "fresh_target_per_s_at_15k": fresh.target_per_s,
        "fresh_offered_per_s_at_15k": round(fresh.achieved_per_s, 1),
        "freshness_samples_at_15k": fresh.samples, "freshness_unseen_at_15k": fresh.unseen,
        "freshness_p50_ms_at_15k": round(fresh.p50_ms, 1),
        "freshness_p99_ms_at_15k": round(fresh.p99_ms, 1),
        "freshness_max_ms_at_15k": round(fresh.max_ms, 1),
        "projection_freshness_p50_ms_at_15k": round(fresh.projection_p50_ms, 1),
        "projection_freshness_p99_ms_at_15k": round(fresh.projection_p99_ms, 1),
        "steady_load_events_at_15k": fresh.sent,
    }  # fmt: skip


async def _reads(
    settings: Settings,
    components: dict[str, processes.Component],
    mode: str,
    secrets: list[str],
    concurrency: int,
    seconds: int,
    keyed: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Balance, ledger-page and check reads over HTTP, the first two next to pgbench running
    their SELECT."""
    out: dict[str, Any] = {}
    api = components["api"].url
    for kind in READ_KINDS:
        cpu = processes.CpuMeter(components)
        got = await reads.read_load(api, kind.path, secrets, concurrency, seconds,
                                    count_declined=kind.count_declined)  # fmt: skip
        name = kind.name
        out[f"cpu_cores_{name}_reads_{mode}"] = cpu.cores()
        out.update({
            f"{name}_reads_{mode}_per_s": round(got.per_s, 1),
            f"{name}_{mode}_p50_ms": round(got.p50_ms, 2),
            f"{name}_{mode}_p99_ms": round(got.p99_ms, 2),
            f"{name}_{mode}_errors": got.errors,
        })  # fmt: skip
        if kind.count_declined:
            out[f"{name}_{mode}_declined"] = got.declined
        if kind.sql is not None:
            script = limits.pgbench_script(kind.sql, keyed, kind.params)
            bench = await limits.pgbench_select(
                settings, script, PGBENCH_CLIENTS, seconds, timeout_s
            )
            out[f"pgbench_{name}_{mode}_tps"] = bench.tps
            out[f"pgbench_{name}_{mode}_latency_ms"] = bench.latency_ms
            if bench.note:
                out["pgbench_note"] = bench.note
        tps = out.get(f"pgbench_{kind.pgbench_of}_{mode}_tps")
        out[f"ratio_{name}_reads_{mode}_vs_pgbench"] = _ratio(got.per_s, tps)
        out["read_tool"] = got.tool
        if kind.at_rate:
            out.update(await _reads_at_rate(components, kind, mode, secrets, seconds))
    out["read_concurrency"] = concurrency
    return out


async def _reads_at_rate(
    components: dict[str, processes.Component],
    kind: ReadKind,
    mode: str,
    secrets: list[str],
    seconds: int,
) -> dict[str, Any]:
    """The kind's reads sent at its target's rate, open loop: the p99 its target states (the
    closed loop's p99 is a saturated machine's), with the first customer's key (oha sends one).
    Nothing where oha is not installed."""
    rate = targets.READ_RATES_PER_S[mode]
    cpu = processes.CpuMeter(components)
    got = await reads.rate_load(components["api"].url, kind.path, secrets[0], rate, seconds,
                                count_declined=kind.count_declined)  # fmt: skip
    if got is None:
        return {"read_rate_note": "oha not installed (make test-deps): no reads at a rate"}
    prefix = f"{kind.name}_{mode}_at_rate"
    return {
        f"cpu_cores_{prefix}": cpu.cores(),
        f"{prefix}_target_per_s": rate,
        f"{prefix}_offered_per_s": round(got.offered_per_s or 0.0, 1),
        f"{prefix}_answered_per_s": round(got.per_s, 1),
        f"{prefix}_p50_ms": round(got.p50_ms, 2),
        f"{prefix}_p99_ms": round(got.p99_ms, 2),
        f"{prefix}_errors": got.errors,
        "read_rate_tool": got.tool,
    }


async def _rebuild_phase(
    settings_base: Settings, entries: int, accounts: int, deadline_s: float
) -> dict[str, Any]:
    """A ledger of `entries` rows over `accounts` made in SQL in a database of its own; the
    rebuild's rows/s, the plain GROUP BY's, and accounts whose rebuilt balance differs."""
    accounts = min(accounts, entries)
    settings = await create_namespace(settings_base, accounts)
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, 4)
    try:
        started = time.monotonic()
        await generate_ledger(pool, entries, accounts)
        generated_s = time.monotonic() - started
        cpu = processes.CpuMeter({})
        report = await asyncio.wait_for(rebuild(pool, settings.projector_group), deadline_s)
        assert report is not None
        cores = cpu.cores()
        plain, differing = await limits.group_by_aggregate(pool)
    finally:
        await pool.close()
        await drop_namespace(settings_base, settings)
    return {
        "rebuild_entries": report.entries,
        "rebuild_accounts": report.accounts,
        "rebuild_generate_seconds": round(generated_s, 1),
        "rebuild_seconds": round(report.seconds, 2),
        "rebuild_rows_per_s": round(report.entries_per_s, 1),
        "group_by_rows_per_s": plain.per_s and round(plain.per_s),
        "ratio_rebuild_vs_group_by": _ratio(report.entries_per_s, plain.per_s),
        "rebuild_differing_accounts": differing,
        "cpu_cores_rebuild": cores,
    }
