"""A smoke run of `creditledger bench` against the real stack: tiny N, short phases, writer,
projector and API as processes of their own. Figures are not asserted against targets (no
timing assertions), only that every one is there, the ledger is exact, and the rebuild equals
the plain aggregate."""

from __future__ import annotations

import asyncpg
import pytest

from services.bench.namespace import drop_namespace
from services.bench.report import table
from services.bench.run import ACCOUNTS_FACTOR, CONTRACT_KEYS, api_as_deployed, run_bench
from services.bench.targets import READ_RATES_PER_S, TARGETS
from services.platform.settings import Settings
from tests.servers import Servers

pytestmark = pytest.mark.integration
EVENTS, ACCOUNTS, REBUILD_ENTRIES = 2_000, 50, 20_000
# Issue 14's figures: each one present and positive (their values are not asserted).
ISSUE_14_KEYS = (
    "produce_events_per_s", "ingest_seconds", "ingest_startup_s",
    "ingest_events_per_s_after_start", "ingest_events_per_s_10x_accounts",
    "ingest_startup_s_10x_accounts", "ingest_events_per_s_after_start_10x_accounts",
    "ingest_scaling_10x_accounts", "freshness_p50_ms_at_15k", "freshness_p99_ms_at_15k",
    "fresh_offered_per_s_at_15k", "check_reads_per_s", "check_p99_ms",
    "check_reads_idle_per_s", "check_idle_p99_ms", "ratio_check_reads_under_load_vs_pgbench",
)  # fmt: skip


async def test_bench_smoke_run(servers: Servers) -> None:
    base = Settings(kafka_bootstrap=servers.kafka_bootstrap, database_url=servers.database_url)
    result = await run_bench(
        base, EVENTS, ACCOUNTS, fresh_rate=500.0, fresh_rate_high=1500.0, fresh_seconds=2.0,
        read_seconds=1,
        read_concurrency=4, naive_sample=500, rebuild_entries=REBUILD_ENTRIES,
        keep_database=True,
    )  # fmt: skip
    bench = base.model_copy(update={"database_url": result["database_url"]})
    try:
        for key in (*CONTRACT_KEYS, *ISSUE_14_KEYS):
            assert isinstance(result[key], int | float) and result[key] > 0, (key, result[key])
        for mode in ("idle", "under_load"):
            for kind in ("balance", "ledger", "check"):
                assert result[f"{kind}_reads_{mode}_per_s"] > 0, (kind, mode)
                assert result[f"{kind}_{mode}_errors"] == 0, (kind, mode)
                assert result[f"ratio_{kind}_reads_{mode}_vs_pgbench"] > 0, (kind, mode)
            assert result[f"check_{mode}_declined"] == 0, mode  # every account has 1e9 credits
            # Sent at the target's rate, open loop (oha, installed by `make test-deps`).
            for kind in ("balance", "check"):
                prefix = f"{kind}_{mode}_at_rate"
                assert result[f"{prefix}_target_per_s"] == READ_RATES_PER_S[mode], prefix
                assert result[f"{prefix}_offered_per_s"] > 0, prefix
                assert result[f"{prefix}_answered_per_s"] > 0, prefix
                assert result[f"{prefix}_p99_ms"] >= result[f"{prefix}_p50_ms"] > 0, prefix
                assert result[f"{prefix}_errors"] == 0, prefix
                assert result[f"cpu_cores_{prefix}"]["api"] > 0, prefix
        for suffix in ("", "_at_15k"):
            assert result[f"freshness_unseen{suffix}"] == 0, suffix
            assert result[f"freshness_samples{suffix}"] > 0, suffix
            # The projector's model is a hop behind what the API reads, never ahead of it.
            assert result[f"projection_freshness_p50_ms{suffix}"] >= 0, suffix
        assert result["projection_freshness_unseen"] == 0
        assert result["fresh_target_per_s_at_15k"] == 1500.0
        # The 10× phase: its own namespace (dropped), every account's ledger exact.
        assert result["accounts_10x"] == ACCOUNTS_FACTOR * ACCOUNTS
        assert result["ledger_exact_10x_accounts"] is True
        assert set(result["cpu_cores_ingest_10x_accounts"]) >= {"writer", "projector"}
        found = result["targets"]
        assert [t["name"] for t in found] == [t.name for t in TARGETS]
        for target in found:
            assert isinstance(target["met"], bool) and target["target"] and target["measured"]
        # Every phase a target names was metered, so each such target states its CPU.
        for target, declared in zip(found, TARGETS, strict=True):
            assert ("limit" in target) == (declared.cpu_phase is not None), target
        # The API serves from worker processes here (one per core): their CPU is the API's.
        assert result["api_workers"] == api_as_deployed(base).api_workers
        assert result["cpu_cores_balance_reads_idle"]["api"] > 0
        # Postgres's side of the ingest profile, or why there is none (a server started before
        # pg_stat_statements was preloaded).
        profiled = result.get("postgres_statements_ingest")
        if profiled:
            writers = ("writer_accounts", "ledger_entries", "outbox")
            assert any(t in s["query"] for s in profiled for t in writers), profiled
        else:
            assert "shared_preload_libraries" in result["postgres_statements_note"], result
        # The 10× accounts phase has its own, from its own database.
        profiled_10x = result.get("postgres_statements_ingest_10x_accounts")
        if profiled:
            assert profiled_10x, result.get("postgres_statements_note_10x_accounts")
            assert any(t in s["query"] for s in profiled_10x for t in writers), profiled_10x
            # And the steady load's, over its freshness samples.
            steady = result.get("postgres_statements_freshness")
            assert steady, result.get("postgres_statements_note_freshness")
            assert any(t in s["query"] for s in steady for t in writers), steady
        assert (result["rebuild_entries"], result["rebuild_differing_accounts"]) == (
            REBUILD_ENTRIES, 0,
        )  # fmt: skip
        for name in ("writer", "projector", "api"):
            memory = result["memory_mb"][name]
            assert 0 < memory["rss_at_half_mb"] <= memory["peak_mb"], (name, memory)
            assert result["cpu_cores_ingest"][name] >= 0
        printed = table(result)
        assert "ratio vs naive" in printed and "targets (" in printed
        assert all(t["name"] in printed for t in found)
        assert result["ledger_exact"] is True
        assert result["postgres_settings"]["synchronous_commit"] == "on"
        assert "postgres: " in table(result)
        expected: dict[str, int] = result["expected_balances"]
        assert len(expected) == ACCOUNTS
        conn = await asyncpg.connect(result["database_url"])
        try:
            rows = await conn.fetch(
                """SELECT account_id, sum(delta) AS balance,
                          sum(delta) FILTER (WHERE reason = 'grant') AS granted,
                          count(*) FILTER (WHERE reason = 'consume') AS consumes
                   FROM ledger_entries GROUP BY account_id"""
            )
            view_rows = await conn.fetch("SELECT account_id, balance FROM balance_view")
            views = {r["account_id"]: r["balance"] for r in view_rows}
        finally:
            await conn.close()
        ledger = {r["account_id"]: r["balance"] for r in rows}
        assert ledger == expected
        assert views == expected
        assert sum(r["consumes"] for r in rows) >= EVENTS  # the ingest phase plus the steady load
        assert all(r["balance"] == r["granted"] - r["consumes"] for r in rows)
    finally:
        await drop_namespace(base, bench)
