"""One run's figures as the printed table (with the targets met or not) and as the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.bench import statements


def public(result: dict[str, Any]) -> dict[str, Any]:
    """What goes to the JSON file: everything but the per-account expectations."""
    return {k: v for k, v in result.items() if k != "expected_balances"}


CPU_PHASES = ("cpu_cores_ingest", "cpu_cores_ingest_10x_accounts", "cpu_cores_freshness",
              "cpu_cores_reads_under_load", "cpu_cores_steady_at_15k",
              "cpu_cores_balance_reads_idle", "cpu_cores_check_reads_idle",
              "cpu_cores_ledger_reads_idle", "cpu_cores_balance_reads_under_load",
              "cpu_cores_check_reads_under_load", "cpu_cores_ledger_reads_under_load",
              "cpu_cores_balance_idle_at_rate", "cpu_cores_check_idle_at_rate",
              "cpu_cores_balance_under_load_at_rate", "cpu_cores_check_under_load_at_rate",
              "cpu_cores_rebuild")  # fmt: skip
# Where Postgres's statement time went, per timed ingest (services/bench/statements.py).
STATEMENT_PHASES = {
    "postgres_statements_ingest": "ingest",
    "postgres_statements_ingest_10x_accounts": "ingest over 10× the accounts",
    "postgres_statements_freshness": "the steady load's freshness samples",
}


def _at_rate_rows(phase: str) -> tuple[tuple[str, str, str], ...]:
    """A read phase's latency rows: its closed loop's, then its run at the target's rate."""
    return (
        ("  closed loop p50 / p99 (ms)", f"{phase}_p50_ms", f"{phase}_p99_ms"),
        ("  at target rate: answered/s, errors", f"{phase}_at_rate_answered_per_s",
         f"{phase}_at_rate_errors"),
        ("    p50 / p99 (ms), open loop", f"{phase}_at_rate_p50_ms", f"{phase}_at_rate_p99_ms"),
    )  # fmt: skip


ROWS = (
    ("pre-load producer (events/s)", "produce_events_per_s", None),
    ("ingest from restart (events/s)", "ingest_events_per_s", None),
    ("  start-up (s) / total (s)", "ingest_startup_s", "ingest_seconds"),
    ("  after start-up (events/s)", "ingest_events_per_s_after_start", None),
    ("  kcat alone (events/s)", "kcat_events_per_s", None),
    ("  psql \\copy alone (rows/s)", "psql_copy_rows_per_s", None),
    ("  ratio vs slower limit", "ratio_vs_limit", None),
    ("ingest at 10× accounts (events/s)", "ingest_events_per_s_10x_accounts",
     "accounts_10x"),
    ("  start-up (s) / after it (events/s)", "ingest_startup_s_10x_accounts",
     "ingest_events_per_s_after_start_10x_accounts"),
    ("  scaling vs ingest, ledger exact", "ingest_scaling_10x_accounts",
     "ledger_exact_10x_accounts"),
    ("naive 1 tx/event (events/s)", "naive_events_per_s", None),
    ("  ratio vs naive", "ratio_vs_naive", None),
    ("steady load achieved / target (ev/s)", "freshness_achieved_per_s", "freshness_target_per_s"),
    ("freshness in balance/check p50 / p99 (ms)", "freshness_p50_ms", "freshness_p99_ms"),
    ("  in the projector's balance_view p50 / p99", "projection_freshness_p50_ms",
     "projection_freshness_p99_ms"),
    ("high load offered / target (ev/s)", "fresh_offered_per_s_at_15k",
     "fresh_target_per_s_at_15k"),
    ("  freshness p50 / p99 (ms)", "freshness_p50_ms_at_15k", "freshness_p99_ms_at_15k"),
    ("  in balance_view p50 / p99 (ms)", "projection_freshness_p50_ms_at_15k",
     "projection_freshness_p99_ms_at_15k"),
    ("balance reads idle (req/s)", "balance_reads_idle_per_s", None),
    *_at_rate_rows("balance_idle"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_balance_idle_tps",
     "ratio_balance_reads_idle_vs_pgbench"),
    ("balance reads under load (req/s)", "balance_reads_under_load_per_s", None),
    *_at_rate_rows("balance_under_load"),
    ("  pgbench same SELECT (tps), ratio", "pgbench_balance_under_load_tps",
     "ratio_balance_reads_under_load_vs_pgbench"),
    ("check reads idle (req/s), 402s", "check_reads_idle_per_s", "check_idle_declined"),
    *_at_rate_rows("check_idle"),
    ("check reads under load (req/s), 402s", "check_reads_under_load_per_s",
     "check_under_load_declined"),
    *_at_rate_rows("check_under_load"),
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
    facts = result.get("machine", {})
    if "python_loop_ns" in facts:
        lines.append(
            f"  machine: {facts.get('nproc')} cores, a Python loop iteration "
            f"{facts['python_loop_ns']} ns, API workers {result.get('api_workers')}"
        )
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
    lines.extend(_profile_lines(result))
    lines.extend(_target_lines(result.get("targets", [])))
    return "\n".join(lines)


def _profile_lines(result: dict[str, Any]) -> list[str]:
    """Where each phase's CPU and Postgres's statement time went, the server's settings, and
    why a figure is missing."""
    lines = []
    for phase in CPU_PHASES:
        if phase in result:
            busy = ", ".join(f"{k} {v}" for k, v in result[phase].items())
            lines.append(f"  {phase}: {busy}")
    for key, during in STATEMENT_PHASES.items():
        if result.get(key):
            lines.append(f"  postgres statements during {during} (share of their execution time):")
            lines.extend(statements.lines(result[key]))
    if "postgres_settings" in result:
        pg = ", ".join(f"{k}={v}" for k, v in result["postgres_settings"].items())
        lines.append(f"  postgres: {pg}")
    notes = ("limit_notes", "pgbench_note", "postgres_statements_note",
             "postgres_statements_note_10x_accounts",
             "postgres_statements_note_freshness", "read_rate_note")  # fmt: skip
    lines.extend(f"  note: {result[note]}" for note in notes if note in result)
    return lines


def _target_lines(targets: list[dict[str, Any]]) -> list[str]:
    if not targets:
        return []
    width = max(len(f"{t['name']} {t['target']}") for t in targets)
    met = sum(1 for t in targets if t["met"])
    at_limit = sum(1 for t in targets if not t["met"] and t.get("at_limit"))
    lines = [f"  targets ({met} of {len(targets)} met; of the others, {at_limit} with a capacity"
             " measured in the run at ≥ 80 %: the CPU, a single-threaded process's core, or the"
             " same work alone)"]  # fmt: skip
    for t in targets:
        goal = f"{t['name']} {t['target']}"
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"    {verdict:<8} {goal:<{width}}  measured {t['measured']}")
        if "limit" in t:
            by = ", ".join(t.get("limited_by", ()))
            mark = f"at ≥ 80 % ({by})" if t["at_limit"] else "each below 80 %"
            lines.append(f"    {'':<8} {'':<{width}}  {t['limit']}: {mark}")
    return lines


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(public(result), indent=2, sort_keys=True) + "\n")
