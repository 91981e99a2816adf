"""Issue 14's targets, each judged met or not from one run's figures. A target whose figure is
missing is not met; a target stated at a load (5,000 or 15,000 events/s) or at a size (10,000
accounts) is met only when the run offered that load or size, so a small run cannot pass it.

Each target also states the CPU its phase used, measured in the same run (`cpu_cores_<phase>`,
processes.CpuMeter): the whole machine's busy cores against `os.cpu_count()`, and each
single-threaded process against its one core. The issue lets a target stay unmet only where a
physical resource is at ≥ 80 % of its capacity; `at_limit` says whether the CPU was, and says
nothing about whether less work per event would have been possible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INGEST_PER_S = 20_000
INGEST_AT_ACCOUNTS = 10_000  # the M
SCALING_10X = 0.8
VS_NAIVE = 10.0
FRESH_RATE_PER_S, FRESH_P99_MS = 5_000, 250.0
FRESH_HIGH_RATE_PER_S, FRESH_HIGH_P99_MS = 15_000, 1_000.0
OFFERED_SHARE = 0.95  # of a load's rate that must have been offered for its target to count
READS_UNDER_LOAD_PER_S, READS_UNDER_LOAD_P99_MS = 3_000, 20.0
READS_IDLE_PER_S, READS_IDLE_P99_MS = 5_000, 10.0
# The rate each read target is measured at (open loop, run.py `_reads_at_rate`), by mode.
READ_RATES_PER_S = {"idle": READS_IDLE_PER_S, "under_load": READS_UNDER_LOAD_PER_S}
REBUILD_ROWS_PER_S = 1_000_000
MEMORY_GROWTH_MB = 10  # BENCHMARKS.md: RSS may move by less than this from N/2 to N
FLAT_COMPONENTS = ("writer", "projector")


@dataclass(frozen=True)
class Verdict:
    measured: str
    met: bool


@dataclass(frozen=True)
class Target:
    name: str
    target: str
    judge: Callable[[dict[str, Any]], Verdict]
    cpu_phase: str | None = None  # the figure's phase: `cpu_cores_<phase>` in the result
    # The figure over the same work's rate measured alone in the run (kcat and psql \copy,
    # pgbench): (the ratio's key, what it was measured against).
    capacity: tuple[str, str] | None = None


LIMIT_SHARE = 0.8  # the "≥ 80 % of the capacity measured for it"
# One event loop each: one core is all they can use, whatever the machine has.
SINGLE_CORE = ("writer", "projector")


@dataclass(frozen=True)
class Limit:
    text: str
    at_limit: bool
    reasons: tuple[str, ...]  # which capacities were at ≥ 80 %: "CPU", "<name>'s core", …


def cpu_limit(result: dict[str, Any], target: Target) -> Limit | None:
    """The phase's busiest CPU against its capacity (and the figure against the same work
    measured alone), or None when the run did not meter the phase."""
    phase = target.cpu_phase
    cores = result.get(f"cpu_cores_{phase}") if phase else None
    nproc = result.get("machine", {}).get("nproc")
    if not isinstance(cores, dict) or "machine" not in cores or not nproc:
        return None
    share = cores["machine"] / nproc
    busy = f"CPU {cores['machine']:.2f} of {nproc} cores busy ({share:.0%}"
    # The machine's figure counts the bench's own load (its producer, wrk, pgbench): said so.
    loading = cores.get("bench")
    parts = [busy + (f", {loading:.2f} of them the bench's load)" if loading else ")")]
    reasons = ["CPU"] if share >= LIMIT_SHARE else []
    single = [*SINGLE_CORE, *(["api"] if result.get("api_workers") == 1 else [])]
    for name in single:
        if cores.get(name, 0.0) >= LIMIT_SHARE:
            parts.append(f"{name} {cores[name]:.2f} of its one core")
            reasons.append(f"{name}'s core")
    ratio = _number(result, target.capacity[0]) if target.capacity else None
    if target.capacity and ratio is not None:
        parts.append(f"{ratio:.2f} of {target.capacity[1]}")
        if ratio >= LIMIT_SHARE:
            reasons.append(target.capacity[1])
    return Limit("; ".join(parts), bool(reasons), tuple(reasons))


def _number(result: dict[str, Any], key: str) -> float | None:
    value = result.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fmt(value: float | None, places: int = 0) -> str:
    return "—" if value is None else f"{value:,.{places}f}"


def _at_least(value: float | None, floor: float) -> bool:
    return value is not None and value >= floor


def _at_most(value: float | None, ceiling: float) -> bool:
    return value is not None and value <= ceiling


def _ingest(result: dict[str, Any]) -> Verdict:
    per_s, accounts = _number(result, "ingest_events_per_s"), result.get("accounts", 0)
    met = _at_least(per_s, INGEST_PER_S) and accounts >= INGEST_AT_ACCOUNTS
    return Verdict(f"{_fmt(per_s)} events/s at {accounts:,} accounts", met)


def _scaling(result: dict[str, Any]) -> Verdict:
    scaling = _number(result, "ingest_scaling_10x_accounts")
    per_s = _number(result, "ingest_events_per_s_10x_accounts")
    accounts = result.get("accounts_10x", 0)
    measured = f"{_fmt(scaling, 3)} × ({_fmt(per_s)} events/s at {accounts:,} accounts)"
    return Verdict(measured, _at_least(scaling, SCALING_10X))


def _naive(result: dict[str, Any]) -> Verdict:
    ratio, naive = _number(result, "ratio_vs_naive"), _number(result, "naive_events_per_s")
    return Verdict(f"{_fmt(ratio, 2)} × (naive {_fmt(naive)} events/s)", _at_least(ratio, VS_NAIVE))


def _freshness(
    p99_key: str, offered_key: str, unseen_key: str, rate: float, p99_ms: float
) -> Callable[[dict[str, Any]], Verdict]:
    def judge(result: dict[str, Any]) -> Verdict:
        p99, offered = _number(result, p99_key), _number(result, offered_key)
        unseen = result.get(unseen_key)
        met = (_at_most(p99, p99_ms) and _at_least(offered, OFFERED_SHARE * rate)
               and unseen == 0)  # fmt: skip
        measured = f"p99 {_fmt(p99)} ms at {_fmt(offered)} events/s offered, {unseen} unseen"
        return Verdict(measured, met)

    return judge


def _reads(
    kind: str, mode: str, per_s_floor: float, p99_ceiling_ms: float
) -> Callable[[dict[str, Any]], Verdict]:
    """Met when the reads sent at the target's rate (open loop) were all answered, at that
    rate, with the p99 under the ceiling; and the closed loop's capacity reached the rate too.
    The closed loop's own p99 is shown, not judged: it is the tail of a saturated machine."""

    def judge(result: dict[str, Any]) -> Verdict:
        capacity = _number(result, f"{kind}_reads_{mode}_per_s")
        saturated_p99 = _number(result, f"{kind}_{mode}_p99_ms")
        at_rate = f"{kind}_{mode}_at_rate"
        answered = _number(result, f"{at_rate}_answered_per_s")
        p99 = _number(result, f"{at_rate}_p99_ms")
        errors = result.get(f"{at_rate}_errors")
        met = (_at_least(capacity, per_s_floor) and errors == 0
               and _at_least(answered, OFFERED_SHARE * per_s_floor)
               and _at_most(p99, p99_ceiling_ms))  # fmt: skip
        measured = (f"at {_fmt(per_s_floor)}/s sent: {_fmt(answered)}/s answered,"
                    f" p99 {_fmt(p99, 1)} ms, {'—' if errors is None else errors} errors;"
                    f" capacity {_fmt(capacity)}/s"
                    f" (closed loop, p99 {_fmt(saturated_p99, 1)} ms)")  # fmt: skip
        if mode == "under_load":  # the target's case is reads while 5,000 events/s arrive
            offered = _number(result, "freshness_achieved_per_s")
            met = met and _at_least(offered, OFFERED_SHARE * FRESH_RATE_PER_S)
            measured += f" at {_fmt(offered)} events/s"
        return Verdict(measured, met)

    return judge


def _rebuild(result: dict[str, Any]) -> Verdict:
    per_s = _number(result, "rebuild_rows_per_s")
    measured = f"{_fmt(per_s)} rows/s of {_fmt(_number(result, 'rebuild_entries'))}"
    return Verdict(measured, _at_least(per_s, REBUILD_ROWS_PER_S))


def _memory(result: dict[str, Any]) -> Verdict:
    memory = result.get("memory_mb", {})
    parts, met = [], True
    for name in FLAT_COMPONENTS:
        figures = memory.get(name)
        if not figures or not figures.get("rss_at_half_mb"):
            parts.append(f"{name} —")
            met = False
            continue
        half, end = figures["rss_at_half_mb"], figures["rss_at_end_mb"]
        parts.append(f"{name} {half} → {end} MB")
        met = met and end <= half + MEMORY_GROWTH_MB
    return Verdict(", ".join(parts), met)


TARGETS = (
    Target("ingest", f"≥ {INGEST_PER_S:,} events/s at {INGEST_AT_ACCOUNTS:,} accounts", _ingest,
           "ingest", ("ratio_vs_limit", "the slower of kcat and psql \\copy")),
    Target("ingest at 10× accounts", f"≥ {SCALING_10X} × ingest", _scaling,
           "ingest_10x_accounts"),
    Target("ingest vs naive", f"≥ {VS_NAIVE:.0f} × naive", _naive, "ingest"),
    Target(
        f"freshness at {FRESH_RATE_PER_S:,} events/s", f"p99 ≤ {FRESH_P99_MS:,.0f} ms",
        _freshness("freshness_p99_ms", "freshness_achieved_per_s", "freshness_unseen",
                   FRESH_RATE_PER_S, FRESH_P99_MS),
        "freshness",
    ),
    Target(
        f"freshness at {FRESH_HIGH_RATE_PER_S:,} events/s", f"p99 ≤ {FRESH_HIGH_P99_MS:,.0f} ms",
        _freshness("freshness_p99_ms_at_15k", "fresh_offered_per_s_at_15k",
                   "freshness_unseen_at_15k", FRESH_HIGH_RATE_PER_S, FRESH_HIGH_P99_MS),
        "steady_at_15k",
    ),
    Target(
        "balance reads under load",
        f"≥ {READS_UNDER_LOAD_PER_S:,}/s, p99 ≤ {READS_UNDER_LOAD_P99_MS:.0f} ms",
        _reads("balance", "under_load", READS_UNDER_LOAD_PER_S, READS_UNDER_LOAD_P99_MS),
        "balance_under_load_at_rate",
        ("ratio_balance_reads_under_load_vs_pgbench", "pgbench running its SELECT"),
    ),
    Target(
        "check reads under load",
        f"≥ {READS_UNDER_LOAD_PER_S:,}/s, p99 ≤ {READS_UNDER_LOAD_P99_MS:.0f} ms",
        _reads("check", "under_load", READS_UNDER_LOAD_PER_S, READS_UNDER_LOAD_P99_MS),
        "check_under_load_at_rate",
        ("ratio_check_reads_under_load_vs_pgbench", "pgbench running the balance SELECT"),
    ),
    Target(
        "balance reads idle", f"≥ {READS_IDLE_PER_S:,}/s, p99 ≤ {READS_IDLE_P99_MS:.0f} ms",
        _reads("balance", "idle", READS_IDLE_PER_S, READS_IDLE_P99_MS),
        "balance_idle_at_rate",
        ("ratio_balance_reads_idle_vs_pgbench", "pgbench running its SELECT"),
    ),
    Target(
        "check reads idle", f"≥ {READS_IDLE_PER_S:,}/s, p99 ≤ {READS_IDLE_P99_MS:.0f} ms",
        _reads("check", "idle", READS_IDLE_PER_S, READS_IDLE_P99_MS),
        "check_idle_at_rate",
        ("ratio_check_reads_idle_vs_pgbench", "pgbench running the balance SELECT"),
    ),
    Target("rebuild", f"≥ {REBUILD_ROWS_PER_S:,} rows/s", _rebuild, "rebuild"),
    Target(
        "memory flat", f"writer, projector RSS at N ≤ RSS at N/2 + {MEMORY_GROWTH_MB} MB", _memory
    ),
)  # fmt: skip


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """`result["targets"]`: one {name, target, measured, met} per target, in TARGETS' order,
    with `limit` (text) and `at_limit` where its phase's CPU was metered."""
    out = []
    for target in TARGETS:
        verdict = target.judge(result)
        judged: dict[str, Any] = {"name": target.name, "target": target.target,
                                  "measured": verdict.measured, "met": verdict.met}  # fmt: skip
        limit = cpu_limit(result, target)
        if limit is not None:
            judged.update(limit=limit.text, at_limit=limit.at_limit, limited_by=limit.reasons)
        out.append(judged)
    return out
