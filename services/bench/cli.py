"""`creditledger bench [--events N] [--accounts M] [--json PATH]`, for services/cli.py to wire."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from services.bench.run import run_bench, table, write_json
from services.runtime import resolve_settings


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="measure ingest, freshness, reads and rebuild")
    bench.add_argument("--events", type=int, default=1_000_000)
    bench.add_argument("--accounts", type=int, default=10_000)
    bench.add_argument("--json", type=Path, default=Path("bench.json"))
    bench.add_argument("--fresh-rate", type=float, default=5000.0, help="events/s")
    bench.add_argument("--fresh-seconds", type=float, default=10.0)
    bench.add_argument("--read-seconds", type=float, default=5.0)


def command(args: argparse.Namespace) -> int:
    settings = resolve_settings(start_stack=True)
    result = asyncio.run(
        run_bench(
            settings, args.events, args.accounts, fresh_rate=args.fresh_rate,
            fresh_seconds=args.fresh_seconds, read_seconds=args.read_seconds,
        )
    )  # fmt: skip
    print(table(result))
    write_json(result, args.json)
    print(f"figures written to {args.json}")
    return 0 if result.get("ledger_exact") else 1
