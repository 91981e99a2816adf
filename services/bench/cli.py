"""`creditledger bench [--events N] [--accounts M] [--json PATH] …`, for services/cli/ to wire."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from services.bench.report import table, write_json
from services.bench.run import run_bench
from services.runtime import resolve_settings


def add_parser(sub: Any) -> None:
    bench = sub.add_parser(
        "bench", help="measure ingest, freshness, reads and rebuild",
        description="The benchmark (about 5 minutes at the defaults on 2 cores) on a namespace "
        "of its own: ingest, the machine's limits, a naive baseline, reads, 10x accounts, rebuild.",
        epilog="examples:\n  creditledger bench\n  creditledger bench --events 20000 "
        "--accounts 1000 --rebuild-entries 100000 --json small.json",
    )  # fmt: skip
    # Issue 14's sizes: N = 200,000 at M = 10,000 (its scaling phase: the same N at 10 × M).
    bench.add_argument("--events", type=int, default=200_000, help="N usage events to ingest")
    bench.add_argument("--accounts", type=int, default=10_000,
                       help="M accounts (the scaling phase uses 10 × M)")  # fmt: skip
    bench.add_argument("--json", type=Path, default=Path("bench.json"),
                       help="where the figures are written")  # fmt: skip
    bench.add_argument("--fresh-rate", type=float, default=5000.0, help="steady load, events/s")
    bench.add_argument("--fresh-rate-high", type=float, default=15000.0,
                       help="second steady load, events/s (figures: *_at_15k)")  # fmt: skip
    bench.add_argument("--fresh-seconds", type=float, default=10.0, help="per steady load")
    bench.add_argument("--read-seconds", type=int, default=5, help="per read measurement")
    bench.add_argument("--read-concurrency", type=int, default=32, help="HTTP connections")
    bench.add_argument("--rebuild-entries", type=int, default=10_000_000,
                       help="ledger rows made in SQL for the rebuild measurement")  # fmt: skip
    bench.add_argument("--profile", type=Path, default=None, metavar="DIR",
                       help="py-spy the writer and projector during ingest, the API during "
                            "reads under load; collapsed stacks go to DIR")  # fmt: skip


def command(args: argparse.Namespace) -> int:
    from services.cli import progress  # the CLI's progress display; bench stays importable alone

    settings = resolve_settings(start_stack=True)
    with progress.phases() as phase:
        result = asyncio.run(run_bench(
            settings, args.events, args.accounts, fresh_rate=args.fresh_rate,
            fresh_rate_high=args.fresh_rate_high,
            fresh_seconds=args.fresh_seconds, read_seconds=args.read_seconds,
            read_concurrency=args.read_concurrency, rebuild_entries=args.rebuild_entries,
            profile_dir=args.profile, phase=phase,
        ))  # fmt: skip
    print(table(result))
    write_json(result, args.json)
    print(f"figures written to {args.json}")
    ok = (result.get("ledger_exact") and result.get("ledger_exact_10x_accounts")
          and result.get("rebuild_differing_accounts") == 0)  # fmt: skip
    return 0 if ok else 1
