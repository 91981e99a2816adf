"""One bench run on a fresh namespace: ingest, the machine's limits, the naive baseline,
freshness, reads and rebuild, in that order; figures and ratios as one dict."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import socket
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from projections.rebuild import rebuild
from services.bench import limits, naive, probes
from services.bench.namespace import create_namespace, drop_namespace
from services.bench.workload import (
    Tally,
    account_id,
    fast_producer,
    grant_message,
    produce,
    usage_message,
    wait_caught_up,
)
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.runtime import COMPONENTS, running

GRANT = 1_000_000_000  # per account: no event is ever short of credits
CONTRACT_KEYS = (
    "ingest_events_per_s", "ratio_vs_limit", "ratio_vs_naive", "freshness_p99_ms",
    "balance_reads_per_s", "balance_p99_ms", "rebuild_rows_per_s",
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return round(ours / theirs, 3) if ours and theirs else None


async def run_bench(
    settings_base: Settings,
    events: int,
    accounts: int,
    *,
    fresh_rate: float = 5000.0,
    fresh_seconds: float = 10.0,
    read_seconds: float = 5.0,
    read_concurrency: int = 32,
    pgbench_seconds: int = 5,
    naive_sample: int = 20_000,
    keep_database: bool = False,
) -> dict[str, Any]:
    """The figures (CONTRACT_KEYS and more); `database_url` names the namespace's database,
    dropped at the end unless `keep_database`; `expected_balances` is what the ledger must hold."""
    assert events >= 1 and accounts >= 1
    settings = await create_namespace(settings_base, accounts)
    settings = settings.model_copy(update={"api_port": _free_port()})
    tally = Tally()
    result: dict[str, Any] = {"events": events, "accounts": accounts,
                              "partitions": settings.topic_partitions,
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                              "database_url": settings.database_url}  # fmt: skip
    timeout = max(120.0, events / 500)  # every wait has a deadline; 500 events/s is a failure
    try:
        async with running(settings, COMPONENTS) as handle:
            pool = handle.pool
            producer = fast_producer(str(settings.kafka_bootstrap))
            await producer.start()
            try:
                # 1. Ingest: grants first (not timed), then N usage events as fast as Kafka takes.
                names = [account_id(a) for a in range(accounts)]
                await produce(producer, settings.commands_topic,
                              (grant_message(a, GRANT) for a in names))  # fmt: skip
                tally.granted.update({a: GRANT for a in names})
                tally.records += accounts
                await wait_caught_up(pool, settings, tally.records, timeout, handle.tasks)
                tally.used.update(names[n % accounts] for n in range(events))
                messages = (usage_message(names[n % accounts], f"bench-{n}") for n in range(events))
                started = time.monotonic()
                await produce(producer, settings.usage_topic, messages)
                produced = time.monotonic()
                tally.records += events
                done = await wait_caught_up(pool, settings, tally.records, timeout, handle.tasks)
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

                # 4. Freshness under a steady load.
                fresh = await probes.freshness(
                    producer, pool, settings, tally, accounts, fresh_rate, fresh_seconds
                )
                result.update({
                    "freshness_target_per_s": fresh.target_per_s,
                    "freshness_achieved_per_s": round(fresh.achieved_per_s, 1),
                    "freshness_samples": fresh.samples, "freshness_unseen": fresh.unseen,
                    "freshness_p50_ms": round(fresh.p50_ms, 1),
                    "freshness_p99_ms": round(fresh.p99_ms, 1),
                    "freshness_max_ms": round(fresh.max_ms, 1),
                })  # fmt: skip
                await wait_caught_up(pool, settings, tally.records, timeout, handle.tasks)
            finally:
                await producer.stop()

            # 5. Reads, idle: the API over real HTTP on localhost (uvicorn in this process).
            url = f"http://{settings.api_host}:{settings.api_port}"
            connections = httpx.Limits(max_connections=read_concurrency)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=connections) as http:
                secrets = await probes.customer_keys(http, settings, min(8, accounts))
                reads = await probes.balance_reads(http, secrets, read_concurrency, read_seconds)
            bench = await limits.pgbench_select(settings, accounts, 8, pgbench_seconds, timeout)
            result.update({
                "balance_reads_per_s": round(reads.per_s, 1),
                "balance_p50_ms": round(reads.p50_ms, 2), "balance_p99_ms": round(reads.p99_ms, 2),
                "balance_read_errors": reads.errors, "read_concurrency": read_concurrency,
                "pgbench_tps": bench.tps, "pgbench_latency_ms": bench.latency_ms,
                "ratio_reads_vs_pgbench": _ratio(reads.per_s, bench.tps),
            })  # fmt: skip
            if bench.note:
                result["pgbench_note"] = bench.note

        # 6. Rebuild, with the components stopped, next to a plain GROUP BY.
        assert settings.database_url is not None
        pool = await create_pool(settings.database_url, 4)
        try:
            report = await asyncio.wait_for(rebuild(pool, settings.projector_group), timeout)
            assert report is not None
            plain = await limits.group_by_aggregate(pool)
            result["rebuild_rows_per_s"] = round(report.entries_per_s, 1)
            result["rebuild_rows"] = report.entries
            result["group_by_rows_per_s"] = plain.per_s and round(plain.per_s)
            result["ratio_rebuild_vs_group_by"] = _ratio(report.entries_per_s, plain.per_s)
            result["ledger_exact"] = await _ledger_exact(pool, tally.expected_balances())
        finally:
            await pool.close()
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        result["expected_balances"] = tally.expected_balances()
        return result
    finally:
        if not keep_database:
            await drop_namespace(settings_base, settings)


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
    ("freshness load achieved (events/s)", "freshness_achieved_per_s", "freshness_target_per_s"),
    ("freshness p50 / p99 (ms)", "freshness_p50_ms", "freshness_p99_ms"),
    ("balance reads idle (req/s)", "balance_reads_per_s", None),
    ("balance p50 / p99 (ms)", "balance_p50_ms", "balance_p99_ms"),
    ("pgbench same SELECT (tps)", "pgbench_tps", None),
    ("  ratio reads vs pgbench", "ratio_reads_vs_pgbench", None),
    ("rebuild (rows/s)", "rebuild_rows_per_s", None),
    ("  INSERT…SELECT…GROUP BY (rows/s)", "group_by_rows_per_s", None),
    ("  ratio rebuild vs GROUP BY", "ratio_rebuild_vs_group_by", None),
    ("ledger exact", "ledger_exact", None),
    ("peak RSS, bench process (MB)", "peak_rss_mb", None),
)


def table(result: dict[str, Any]) -> str:
    lines = [f"creditledger bench: {result['events']} events over {result['accounts']} accounts"]
    for label, key, second in ROWS:
        value = str(result.get(key))
        if second is not None:
            value += f" / {result.get(second)}"
        lines.append(f"  {label:<38} {value}")
    for note in ("limit_notes", "pgbench_note"):
        if note in result:
            lines.append(f"  note: {result[note]}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(public(result), indent=2, sort_keys=True) + "\n")
