"""One bench run on a fresh namespace, with writer, projector and API as separate processes:
ingest (memory sampled at N/2 and N), the machine's limits, the naive baseline, reads idle,
a steady load (freshness, then reads under it), and the rebuild of a large ledger made in SQL;
figures and ratios as one dict."""

from __future__ import annotations

import asyncio
import json
import resource
import tempfile
import time
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from projections.balance.store import READ_VIEW
from projections.rebuild import rebuild
from services.api.reads.ledger import LEDGER_PAGE
from services.bench import limits, naive, processes, reads
from services.bench.namespace import create_namespace, drop_namespace
from services.bench.probes import SteadyLoad
from services.bench.profile import Sampler, machine
from services.bench.synthetic import generate_ledger
from services.bench.workload import (
    Tally,
    account_id,
    consumed_records,
    fast_producer,
    grant_message,
    produce,
    usage_message,
    wait_caught_up,
)
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.runtime import COMPONENTS

GRANT = 1_000_000_000  # per account: no event is ever short of credits
CONTRACT_KEYS = (
    "ingest_events_per_s", "ratio_vs_limit", "ratio_vs_naive", "freshness_p99_ms",
    "balance_reads_per_s", "balance_p99_ms", "rebuild_rows_per_s",
)  # fmt: skip
MEMORY_SAMPLE_S = 0.25
KEYED_ACCOUNTS = 64  # accounts the read load uses (one API key each), and pgbench draws from
PGBENCH_CLIENTS = 16
# The API's two SELECTs as pgbench runs them: the named queries, `$1` an account.
BALANCE_SCRIPT_PARAMS: dict[int, str] = {}
LEDGER_SCRIPT_PARAMS = {2: "NULL", 3: "NULL", 4: "NULL", 5: "NULL", 6: "101", 7: "0"}


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours and theirs else None


class MemorySampler:
    """RSS of each component every 0.25 s during ingest: the sample at half the events and the
    last one, to show whether resident memory grows with N."""

    def __init__(self, components: dict[str, processes.Component]) -> None:
        self.components = components
        self.at_half: dict[str, int] = {}
        self.at_end: dict[str, int] = {}

    async def run(
        self, pool: asyncpg.Pool, settings: Settings, half: int, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            rss = {n: processes.memory_kb(c.pid)[0] for n, c in self.components.items()}
            if not self.at_half and await consumed_records(pool, settings) >= half:
                self.at_half = rss
            self.at_end = rss
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MEMORY_SAMPLE_S)

    def figures(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, component in self.components.items():
            rss_kb, peak_kb = processes.memory_kb(component.pid)
            out[name] = {
                "rss_at_half_mb": round(self.at_half.get(name, 0) / 1024),
                "rss_at_end_mb": round(self.at_end.get(name, rss_kb) / 1024),
                "peak_mb": round(peak_kb / 1024),  # VmHWM over the whole run
            }
        return out


async def run_bench(
    settings_base: Settings,
    events: int,
    accounts: int,
    *,
    fresh_rate: float = 5000.0,
    fresh_seconds: float = 10.0,
    read_seconds: int = 5,
    read_concurrency: int = 32,
    naive_sample: int = 20_000,
    rebuild_entries: int = 10_000_000,
    profile_dir: Path | None = None,
    keep_database: bool = False,
) -> dict[str, Any]:
    """The figures (CONTRACT_KEYS and more); `database_url` names the namespace's database,
    dropped at the end unless `keep_database`; `expected_balances` is what the ledger must hold."""
    assert events >= 1 and accounts >= 1 and rebuild_entries >= 1
    settings = await create_namespace(settings_base, accounts)
    tally = Tally()
    result: dict[str, Any] = {"events": events, "accounts": accounts,
                              "partitions": settings.topic_partitions, "machine": machine(),
                              "database_url": settings.database_url}  # fmt: skip
    timeout = max(120.0, events / 500)  # every wait has a deadline; 500 events/s is a failure
    log_dir = Path(tempfile.mkdtemp(prefix="creditledger-bench-"))
    result["log_dir"] = str(log_dir)
    try:
        async with AsyncExitStack() as stack:
            components = await processes.start(settings, COMPONENTS, log_dir)
            stack.push_async_callback(processes.stop, components.values())

            def check_alive() -> None:
                for component in components.values():
                    component.check_alive()

            assert settings.database_url is not None
            pool = await create_pool(settings.database_url, 8)
            stack.push_async_callback(pool.close)
            producer = fast_producer(str(settings.kafka_bootstrap))
            await producer.start()
            stack.push_async_callback(producer.stop)
            samplers: dict[str, Sampler] = {}

            # 1. Ingest: grants first (not timed), then N usage events as fast as Kafka takes.
            names = [account_id(a) for a in range(accounts)]
            await produce(producer, settings.commands_topic,
                          (grant_message(a, GRANT) for a in names))  # fmt: skip
            tally.granted.update({a: GRANT for a in names})
            tally.records += accounts
            await wait_caught_up(pool, settings, tally.records, timeout, check_alive)
            tally.used.update(names[n % accounts] for n in range(events))
            messages = (usage_message(names[n % accounts], f"bench-{n}") for n in range(events))
            memory = MemorySampler(components)
            ingest_done = asyncio.Event()
            sampling = asyncio.create_task(
                memory.run(pool, settings, tally.records + events // 2, ingest_done)
            )
            if profile_dir is not None:
                for name in ("writer", "projector"):
                    samplers[name] = Sampler(name, components[name].pid, profile_dir)
                    await samplers[name].start()
            cpu = processes.CpuMeter(components)
            started = time.monotonic()
            await produce(producer, settings.usage_topic, messages)
            produced = time.monotonic()
            tally.records += events
            done = await wait_caught_up(pool, settings, tally.records, timeout, check_alive)
            result["cpu_cores_ingest"] = cpu.cores()
            ingest_done.set()
            await sampling
            for sampler in samplers.values():
                await sampler.stop()
            ingest = events / (done - started)
            result["produce_events_per_s"] = round(events / (produced - started))
            result["ingest_events_per_s"] = round(ingest, 1)
            result["ingest_seconds"] = round(done - started, 2)

            # 2. The machine's limits for the same work.
            kcat = await limits.kcat_read(settings, settings.usage_topic, events, timeout)
            copy = await limits.psql_copy(pool, settings, events, accounts, timeout)
            result["kcat_events_per_s"] = kcat.per_s and round(kcat.per_s)
            result["psql_copy_rows_per_s"] = copy.per_s and round(copy.per_s)
            if kcat.note or copy.note:
                result["limit_notes"] = "; ".join(n for n in (kcat.note, copy.note) if n)
            slower = min(r for r in (kcat.per_s, copy.per_s, float("inf")) if r)
            result["ratio_vs_limit"] = _ratio(ingest, slower)

            # 3. The naive baseline.
            sample = min(events, naive_sample)
            naive_per_s = await naive.naive_rate(pool, sample, accounts, deadline_s=60.0)
            result["naive_events_per_s"] = round(naive_per_s, 1)
            result["naive_sample"] = sample
            result["ratio_vs_naive"] = _ratio(ingest, naive_per_s)

            # 4. Reads while idle, then a steady load: freshness first, reads under it after.
            api = components["api"].url
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                secrets = await reads.customer_keys(http, settings, min(KEYED_ACCOUNTS, accounts))
            keyed = len(secrets)
            read_args = (secrets, read_concurrency, read_seconds, keyed, timeout)
            result.update(await _reads(settings, api, "idle", *read_args))
            load = SteadyLoad(
                producer, pool, settings, tally, accounts, fresh_rate, fresh_seconds,
                max_seconds=fresh_seconds + 4 * read_seconds + 120,
            )  # fmt: skip
            loading = asyncio.create_task(load.run())
            try:
                await load.sampled.wait()
                check_alive()
                if profile_dir is not None:
                    samplers["api"] = Sampler("api", components["api"].pid, profile_dir)
                    await samplers["api"].start()
                cpu = processes.CpuMeter(components)
                result.update(await _reads(settings, api, "under_load", *read_args))
                result["cpu_cores_reads_under_load"] = cpu.cores()
                if "api" in samplers:
                    await samplers["api"].stop()
            finally:
                load.stop.set()
                fresh = await loading
            result.update({
                "freshness_target_per_s": fresh.target_per_s,
                "freshness_achieved_per_s": round(fresh.achieved_per_s, 1),
                "freshness_samples": fresh.samples, "freshness_unseen": fresh.unseen,
                "freshness_p50_ms": round(fresh.p50_ms, 1),
                "freshness_p99_ms": round(fresh.p99_ms, 1),
                "freshness_max_ms": round(fresh.max_ms, 1),
                "steady_load_events": fresh.sent,
            })  # fmt: skip
            # The contract's names: the balance figures under the steady load (the target's case).
            result["balance_reads_per_s"] = result["balance_reads_under_load_per_s"]
            result["balance_p99_ms"] = result["balance_under_load_p99_ms"]
            await wait_caught_up(pool, settings, tally.records, timeout, check_alive)
            result["memory_mb"] = memory.figures()
            result["ledger_exact"] = await _ledger_exact(pool, tally.expected_balances())
        result["profiles"] = {name: s.summary() for name, s in samplers.items()}
        if profile_dir is not None:
            result["profile_dir"] = str(profile_dir)

        # 5. Rebuild of a large ledger (made in SQL) next to a plain GROUP BY.
        rebuild_deadline_s = max(600.0, rebuild_entries / 10_000)  # 10,000 rows/s is a failure
        result.update(
            await _rebuild_phase(settings_base, rebuild_entries, accounts, rebuild_deadline_s)
        )
        result["memory_mb"]["bench"] = {
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        }
        result["expected_balances"] = tally.expected_balances()
        return result
    finally:
        if not keep_database:
            await drop_namespace(settings_base, settings)


async def _reads(
    settings: Settings,
    api: str,
    mode: str,
    secrets: list[str],
    concurrency: int,
    seconds: int,
    keyed: int,
    deadline_s: float,
) -> dict[str, Any]:
    """Balance and ledger-page reads over HTTP, each next to pgbench running its SELECT."""
    out: dict[str, Any] = {}
    for kind, path, sql, params in (
        ("balance", reads.BALANCE_PATH, READ_VIEW, BALANCE_SCRIPT_PARAMS),
        ("ledger", reads.LEDGER_PATH, LEDGER_PAGE, LEDGER_SCRIPT_PARAMS),
    ):
        got = await reads.read_load(api, path, secrets, concurrency, seconds)
        script = limits.pgbench_script(sql, keyed, params)
        bench = await limits.pgbench_select(settings, script, PGBENCH_CLIENTS, seconds, deadline_s)
        out.update({
            f"{kind}_reads_{mode}_per_s": round(got.per_s, 1),
            f"{kind}_{mode}_p50_ms": round(got.p50_ms, 2),
            f"{kind}_{mode}_p99_ms": round(got.p99_ms, 2),
            f"{kind}_{mode}_errors": got.errors,
            f"pgbench_{kind}_{mode}_tps": bench.tps,
            f"pgbench_{kind}_{mode}_latency_ms": bench.latency_ms,
            f"ratio_{kind}_reads_{mode}_vs_pgbench": _ratio(got.per_s, bench.tps),
        })  # fmt: skip
        out["read_tool"] = got.tool
        if bench.note:
            out["pgbench_note"] = bench.note
    out["read_concurrency"] = concurrency
    return out


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
        report = await asyncio.wait_for(rebuild(pool, settings.projector_group), deadline_s)
        assert report is not None
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
    }


async def _ledger_exact(pool: asyncpg.Pool, expected: dict[str, int]) -> bool:
    """Ledger sums, writer snapshots and balance view all equal grants − events, per account."""
    rows = await pool.fetch(
        """SELECT e.account_id, sum(e.delta) AS ledger, w.balance AS writer, b.balance AS view
           FROM ledger_entries e JOIN writer_accounts w USING (account_id)
           LEFT JOIN balance_view b USING (account_id)
           GROUP BY e.account_id, w.balance, b.balance"""
    )
    found = {r["account_id"]: (r["ledger"], r["writer"], r["view"]) for r in rows}
    return found.keys() == expected.keys() and all(
        found[a] == (v, v, v) for a, v in expected.items()
    )


def public(result: dict[str, Any]) -> dict[str, Any]:
    """What goes to the JSON file: everything but the per-account expectations."""
    return {k: v for k, v in result.items() if k != "expected_balances"}


ROWS = (
    ("ingest end to end (events/s)", "ingest_events_per_s", None),
    ("  kcat alone (events/s)", "kcat_events_per_s", None),
    ("  psql \\copy alone (rows/s)", "psql_copy_rows_per_s", None),
    ("  ratio vs slower limit", "ratio_vs_limit", None),
    ("naive 1 tx/event (events/s)", "naive_events_per_s", None),
    ("  ratio vs naive", "ratio_vs_naive", None),
    ("steady load achieved / target (ev/s)", "freshness_achieved_per_s", "freshness_target_per_s"),
    ("freshness p50 / p99 (ms)", "freshness_p50_ms", "freshness_p99_ms"),
    ("balance reads idle (req/s)", "balance_reads_idle_per_s", None),
    ("  p50 / p99 (ms)", "balance_idle_p50_ms", "balance_idle_p99_ms"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_balance_idle_tps",
     "ratio_balance_reads_idle_vs_pgbench"),
    ("balance reads under load (req/s)", "balance_reads_under_load_per_s", None),
    ("  p50 / p99 (ms)", "balance_under_load_p50_ms", "balance_under_load_p99_ms"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_balance_under_load_tps",
     "ratio_balance_reads_under_load_vs_pgbench"),
    ("ledger page reads idle (req/s)", "ledger_reads_idle_per_s", None),
    ("  p50 / p99 (ms)", "ledger_idle_p50_ms", "ledger_idle_p99_ms"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_ledger_idle_tps",
     "ratio_ledger_reads_idle_vs_pgbench"),
    ("ledger page reads under load (req/s)", "ledger_reads_under_load_per_s", None),
    ("  p50 / p99 (ms)", "ledger_under_load_p50_ms", "ledger_under_load_p99_ms"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_ledger_under_load_tps",
     "ratio_ledger_reads_under_load_vs_pgbench"),
    ("rebuild (rows/s) of N entries", "rebuild_rows_per_s", "rebuild_entries"),
    ("  INSERT…SELECT…GROUP BY (rows/s)", "group_by_rows_per_s", None),
    ("  ratio rebuild vs GROUP BY", "ratio_rebuild_vs_group_by", None),
    ("ledger exact / rebuild differing", "ledger_exact", "rebuild_differing_accounts"),
)  # fmt: skip


def table(result: dict[str, Any]) -> str:
    lines = [f"creditledger bench: {result['events']} events over {result['accounts']} accounts"]
    for label, key, second in ROWS:
        value = str(result.get(key))
        if second is not None:
            value += f" / {result.get(second)}"
        lines.append(f"  {label:<38} {value}")
    lines.append("  memory (MB): rss at N/2 → at N, peak")
    for name, figures in result.get("memory_mb", {}).items():
        if "rss_at_half_mb" in figures:
            half, end = figures["rss_at_half_mb"], figures["rss_at_end_mb"]
            lines.append(f"    {name:<10} {half} → {end}, peak {figures['peak_mb']}")
        else:
            lines.append(f"    {name:<10} peak {figures['peak_mb']}")
    for phase in ("cpu_cores_ingest", "cpu_cores_reads_under_load"):
        if phase in result:
            busy = ", ".join(f"{k} {v}" for k, v in result[phase].items())
            lines.append(f"  {phase}: {busy}")
    for note in ("limit_notes", "pgbench_note"):
        if note in result:
            lines.append(f"  note: {result[note]}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(public(result), indent=2, sort_keys=True) + "\n")
