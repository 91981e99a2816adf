"""The bench's verdicts and parsing, on figures made up here: the targets' rules (met only at
the load and size they name), the printed table, wrk's 402 count, a pre-loaded ingest's
figures."""

from __future__ import annotations

from typing import Any

import pytest

from services.bench.ingest import Timing
from services.bench.reads import parse_oha, parse_wrk
from services.bench.report import table
from services.bench.targets import TARGETS, evaluate

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8080
  2 threads and 4 connections
  Latency Distribution
     50%    1.20ms
     99%   12.50ms
  1000 requests in 1.00s, 300.00KB read
  Non-2xx or 3xx responses: 30
Requests/sec:   1000.00
Declined (402): 25
"""


def at_rate(kind: str, mode: str, answered_per_s: float, p99_ms: float) -> dict[str, Any]:
    prefix = f"{kind}_{mode}_at_rate"
    return {f"{prefix}_answered_per_s": answered_per_s, f"{prefix}_p99_ms": p99_ms,
            f"{prefix}_errors": 0}  # fmt: skip


def passing() -> dict[str, Any]:
    """Figures that meet every target, at the sizes and loads the targets name."""
    return {
        "events": 200_000, "accounts": 10_000, "accounts_10x": 100_000,
        "ingest_events_per_s": 25_000.0, "ingest_events_per_s_10x_accounts": 21_000.0,
        "ingest_scaling_10x_accounts": 0.84, "ratio_vs_naive": 12.0,
        "naive_events_per_s": 2_000.0,
        "freshness_p99_ms": 200.0, "freshness_achieved_per_s": 4_990.0, "freshness_unseen": 0,
        "freshness_p99_ms_at_15k": 900.0, "fresh_offered_per_s_at_15k": 14_900.0,
        "freshness_unseen_at_15k": 0,
        # The closed loop's capacity (its saturated p99 is shown, not judged) …
        "balance_reads_under_load_per_s": 3_500.0, "balance_under_load_p99_ms": 45.0,
        "check_reads_under_load_per_s": 3_200.0, "check_under_load_p99_ms": 48.0,
        "balance_reads_idle_per_s": 6_000.0, "balance_idle_p99_ms": 28.0,
        "check_reads_idle_per_s": 5_500.0, "check_idle_p99_ms": 29.0,
        # … and the reads sent at the target's rate.
        **at_rate("balance", "under_load", 2_990.0, 15.0),
        **at_rate("check", "under_load", 2_999.0, 18.0),
        **at_rate("balance", "idle", 4_990.0, 8.0), **at_rate("check", "idle", 5_000.0, 9.0),
        "rebuild_rows_per_s": 1_200_000.0, "rebuild_entries": 10_000_000,
        "memory_mb": {"writer": {"rss_at_half_mb": 90, "rss_at_end_mb": 99, "peak_mb": 100},
                      "projector": {"rss_at_half_mb": 80, "rss_at_end_mb": 80, "peak_mb": 81}},
    }  # fmt: skip


def met(result: dict[str, Any]) -> dict[str, bool]:
    return {t["name"]: t["met"] for t in evaluate(result)}


def test_every_target_met_when_every_figure_is_good() -> None:
    verdicts = evaluate(passing())
    assert [v["name"] for v in verdicts] == [t.name for t in TARGETS]
    assert all(v["met"] is True for v in verdicts)
    assert {"name", "target", "measured", "met"} == set(verdicts[0])


def test_a_missing_figure_is_not_met() -> None:
    assert not any(met({"events": 1, "accounts": 1}).values())


def test_a_target_at_a_load_counts_only_when_that_load_was_offered() -> None:
    result = passing() | {"fresh_offered_per_s_at_15k": 11_000.0}
    assert met(result)["freshness at 15,000 events/s"] is False
    under_half_load = passing() | {"freshness_achieved_per_s": 500.0}
    verdicts = met(under_half_load)
    assert verdicts["freshness at 5,000 events/s"] is False
    assert verdicts["balance reads under load"] is False
    assert verdicts["balance reads idle"] is True
    assert met(passing() | {"freshness_unseen": 1})["freshness at 5,000 events/s"] is False


def test_ingest_counts_only_at_the_issues_accounts() -> None:
    assert met(passing() | {"accounts": 2_000})["ingest"] is False
    assert met(passing() | {"ingest_events_per_s": 19_999.0})["ingest"] is False


def test_each_threshold_is_inclusive_and_judged() -> None:
    assert met(passing() | {"ingest_scaling_10x_accounts": 0.8})["ingest at 10× accounts"]
    assert not met(passing() | {"ingest_scaling_10x_accounts": 0.79})["ingest at 10× accounts"]
    assert not met(passing() | {"ratio_vs_naive": 9.9})["ingest vs naive"]
    assert met(passing() | {"check_under_load_at_rate_p99_ms": 20.0})["check reads under load"]
    assert not met(passing() | {"check_under_load_at_rate_p99_ms": 20.5})["check reads under load"]
    assert not met(passing() | {"check_idle_at_rate_p99_ms": 10.5})["check reads idle"]
    assert not met(passing() | {"rebuild_rows_per_s": 999_999.0})["rebuild"]


def test_memory_may_grow_by_ten_mb_not_more() -> None:
    grown = passing()
    grown["memory_mb"]["writer"] = {"rss_at_half_mb": 90, "rss_at_end_mb": 101, "peak_mb": 101}
    assert met(grown)["memory flat"] is False
    unsampled = passing()
    unsampled["memory_mb"]["projector"] = {"rss_at_half_mb": 0, "rss_at_end_mb": 80, "peak_mb": 80}
    assert met(unsampled)["memory flat"] is False


def test_table_prints_each_target_met_or_not() -> None:
    result = passing() | {"ingest_events_per_s": 2_644.0}
    result["targets"] = evaluate(result)
    printed = table(result)
    assert "targets (10 of 11 met; of the others, 0 with a capacity measured in the run" in printed
    ingest_line = next(line for line in printed.splitlines() if "NOT met" in line)
    assert "ingest ≥ 20,000 events/s" in ingest_line and "2,644 events/s" in ingest_line


def test_an_unmet_target_states_its_phases_cpu_against_the_capacity() -> None:
    result = passing() | {
        "ingest_events_per_s": 2_644.0, "machine": {"nproc": 2}, "api_workers": 1,
        "cpu_cores_ingest": {"writer": 0.71, "projector": 0.4, "postgres": 0.38,
                             "machine": 1.7},
        "cpu_cores_balance_idle_at_rate": {"api": 0.95, "bench": 0.12, "machine": 1.3},
        "cpu_cores_freshness": {"writer": 0.3, "machine": 1.0},
    }  # fmt: skip
    verdicts = {t["name"]: t for t in evaluate(result)}
    ingest = verdicts["ingest"]
    assert ingest["limit"] == "CPU 1.70 of 2 cores busy (85%)"
    assert (ingest["at_limit"], ingest["limited_by"]) == (True, ("CPU",))
    # 65 % of the machine (some of it the bench's own load), but the one API process held its
    # one core.
    idle = verdicts["balance reads idle"]
    assert idle["limit"] == (
        "CPU 1.30 of 2 cores busy (65%, 0.12 of them the bench's load); api 0.95 of its one core"
    )
    assert (idle["at_limit"], idle["limited_by"]) == (True, ("api's core",))
    assert verdicts["freshness at 5,000 events/s"]["at_limit"] is False
    # With API workers the API is not held to one core; an unmetered phase states nothing.
    with_workers = {t["name"]: t for t in evaluate(result | {"api_workers": 2})}
    assert with_workers["balance reads idle"]["at_limit"] is False
    assert "limit" not in verdicts["rebuild"]
    # Beside the CPU, the figure against the same work measured alone in the run.
    fed = result | {"ratio_vs_limit": 0.057, "ratio_balance_reads_idle_vs_pgbench": 0.85}
    limits = {t["name"]: t for t in evaluate(fed | {"api_workers": 2})}
    assert limits["ingest"]["limit"].endswith("; 0.06 of the slower of kcat and psql \\copy")
    assert limits["balance reads idle"]["limit"].endswith("; 0.85 of pgbench running its SELECT")
    assert limits["balance reads idle"]["limited_by"] == ("pgbench running its SELECT",)
    result["targets"] = list(verdicts.values())
    printed = table(result)
    assert "of the others, 1 with a capacity measured in the run at ≥ 80 %" in printed
    assert "CPU 1.70 of 2 cores busy (85%): at ≥ 80 % (CPU)" in printed
    assert "CPU 1.00 of 2 cores busy (50%): each below 80 %" in printed


def test_reads_at_a_rate_are_judged_there_not_in_the_closed_loop() -> None:
    """The saturated closed loop's p99 does not fail a target; the open loop's does, and so do
    its errors, a rate it fell short of, or a capacity below the rate."""
    verdicts = met(passing() | {"balance_idle_p99_ms": 250.0})
    assert verdicts["balance reads idle"] is True
    for figures in (
        {"balance_idle_at_rate_errors": 1},
        {"balance_idle_at_rate_answered_per_s": 4_700.0},
        {"balance_reads_idle_per_s": 4_900.0},
    ):
        assert met(passing() | figures)["balance reads idle"] is False, figures
    unmeasured = {k: v for k, v in passing().items() if not k.startswith("balance_idle_at_rate")}
    assert met(unmeasured)["balance reads idle"] is False
    noted = table(unmeasured | {"read_rate_note": "oha not installed"})
    assert "  note: oha not installed" in noted
    judged = {t["name"]: t["measured"] for t in evaluate(passing())}
    assert judged["check reads under load"] == (
        "at 3,000/s sent: 2,999/s answered, p99 18.0 ms, 0 errors; capacity 3,200/s"
        " (closed loop, p99 48.0 ms) at 4,990 events/s"
    )


def test_oha_402s_are_answers_and_unanswered_are_errors() -> None:
    report = {
        "summary": {"total": 1.25}, "latencyPercentiles": {"p50": 0.002051, "p99": 0.0070851},
        "statusCodeDistribution": {"200": 40, "402": 6, "500": 1},
        "errorDistribution": {"connection closed": 2, "timeout": 1},
    }  # fmt: skip
    reads = parse_oha(report, 1, count_declined=True)
    assert (reads.requests, reads.declined, reads.errors) == (50, 6, 4)
    assert reads.per_s == 46 / 1.25  # good answers over the run, its last answers' wait included
    assert reads.p50_ms == pytest.approx(2.051)
    assert reads.p99_ms == pytest.approx(7.0851)
    assert reads.offered_per_s == 50.0
    assert parse_oha(report, 1).errors == 10  # where a 402 is not an answer
    # No answer at all: oha leaves the percentiles null.
    empty = report | {"latencyPercentiles": {"p50": None, "p99": None}}
    assert parse_oha(empty, 1).p99_ms == 0.0


def test_wrk_402s_are_answers_not_errors() -> None:
    reads = parse_wrk(WRK_OUTPUT)
    assert (reads.requests, reads.declined, reads.errors) == (1000, 25, 5)
    assert reads.per_s == 1000.0 * 995 / 1000
    assert (reads.p50_ms, reads.p99_ms) == (1.2, 12.5)
    without = parse_wrk(WRK_OUTPUT.replace("Declined (402): 25\n", ""))
    assert (without.declined, without.errors) == (0, 30)


def test_ingest_figures_separate_start_up_from_the_rest() -> None:
    timing = Timing(events=10_000, produce_s=0.5, started=100.0, first_applied=102.0,
                    caught_up=104.0)  # fmt: skip
    assert timing.figures("_x") == {
        "produce_events_per_s_x": 20_000, "ingest_events_per_s_x": 2_500.0,
        "ingest_seconds_x": 4.0, "ingest_startup_s_x": 2.0,
        "ingest_events_per_s_after_start_x": 5_000.0,
    }  # fmt: skip


def test_the_postgres_statement_profile_is_printed_or_its_note() -> None:
    profiled = {"events": 1, "accounts": 1, "postgres_statements_ingest": [
        {"query": "COPY ledger_entries", "calls": 12, "rows": 2400, "total_ms": 1500,
         "ms_per_call": 125.0, "share": 0.412},
    ]}  # fmt: skip
    text = table(profiled)
    assert "postgres statements during ingest" in text
    assert "41.2%" in text and "COPY ledger_entries" in text and "12 calls" in text
    unprofiled = table({"events": 1, "accounts": 1, "postgres_statements_note": "no profile: x"})
    assert "note: no profile: x" in unprofiled
    assert "10× the accounts" not in text


def test_the_ten_times_accounts_phase_prints_its_own_statement_profile() -> None:
    statement = {"query": "UPDATE writer_accounts", "calls": 8, "rows": 60_000,
                 "total_ms": 410, "ms_per_call": 51.2, "share": 0.07}  # fmt: skip
    text = table({"events": 1, "accounts": 1,
                  "postgres_statements_ingest_10x_accounts": [statement]})  # fmt: skip
    assert "postgres statements during ingest over 10× the accounts" in text
    assert "7.0%" in text and "UPDATE writer_accounts" in text
    noted = table({"events": 1, "accounts": 1,
                   "postgres_statements_note_10x_accounts": "no statement profile: y"})  # fmt: skip
    assert "note: no statement profile: y" in noted


def test_the_steady_load_prints_its_own_statement_profile() -> None:
    statement = {"query": "SELECT * FROM balance_view", "calls": 40, "rows": 9_000,
                 "total_ms": 120, "ms_per_call": 3.0, "share": 0.09}  # fmt: skip
    text = table({"events": 1, "accounts": 1, "postgres_statements_freshness": [statement]})
    assert "postgres statements during the steady load's freshness samples" in text
    assert "9.0%" in text and "SELECT * FROM balance_view" in text
    noted = table({"events": 1, "accounts": 1,
                   "postgres_statements_note_freshness": "no statement profile: z"})  # fmt: skip
    assert "note: no statement profile: z" in noted
