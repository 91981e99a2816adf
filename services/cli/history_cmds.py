"""`creditledger balance|export|replay|reprice`: the ledger's history."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from services import runtime
from services.cli import base, progress
from services.platform.postgres import create_pool, migrate

BY_HELP = (
    "recorded: the ledger's clock (recorded_at, when the ledger appended the entry: what it "
    "knew then); occurred: the event's clock (occurred_at, when the call happened)"
)


def add_parsers(sub: Any) -> None:
    _add_balance(sub)
    _add_export(sub)
    _add_replay(sub)
    _add_reprice(sub)


def _add_balance(sub: Any) -> None:
    balance = sub.add_parser(
        "balance",
        help="an account's balance at a point in time",
        description="The balance an account had at an instant, folded from its ledger entries.",
        epilog=base.examples(
            "creditledger balance acct_42 --as-of 2026-11-21T10:00:00Z",
            "creditledger balance acct_42 --as-of 2026-11-21 --by occurred",
            "creditledger balance acct_42 --as-of now",
        ),
    )
    balance.add_argument("account_id", help="the account, e.g. acct_42")
    balance.add_argument(
        "--as-of", required=True, type=base.instant, metavar="INSTANT", help=base.INSTANT_HELP
    )
    balance.add_argument("--by", choices=("recorded", "occurred"), default="recorded", help=BY_HELP)
    balance.set_defaults(handler=_balance)


def _add_export(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="stream the ledger as csv, jsonl or parquet",
        description="Every ledger entry in [--from, --to), in ledger order, from one repeatable-"
        "read snapshot. The window filters on the clock --by names: by default recorded_at "
        "(ledger time), with --by occurred the event's occurred_at.",
        epilog=base.examples(
            "creditledger export --from 2026-11-01 --to 2026-11-30 > november.csv",
            "creditledger export --by occurred --from 2026-11-21 --format jsonl --account acct_42",
            "creditledger export --format parquet --output ledger.parquet",
        ),
    )
    export.add_argument(
        "--from",
        dest="from_",
        type=base.instant,
        default=None,
        metavar="INSTANT",
        help="first instant included, on the --by clock (default: the start); " + base.INSTANT_HELP,
    )
    export.add_argument(
        "--to",
        type=base.end_instant,
        default=None,
        metavar="INSTANT",
        help="first instant excluded, on the --by clock (default: no end); "
        + base.END_INSTANT_HELP,
    )
    export.add_argument(
        "--by",
        choices=("recorded", "occurred"),
        default="recorded",
        help="the clock --from/--to filter: " + BY_HELP,
    )
    export.add_argument(
        "--format", choices=("csv", "jsonl", "parquet"), default="csv", help="output format"
    )
    export.add_argument("--account", default=None, help="only this account (default: all)")
    export.add_argument("--output", default="-", help="a file, or - for standard output")
    export.set_defaults(handler=_export)


def _add_replay(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="rebuild the ledger from Kafka into a fresh database and compare",
        description="Run the writer over the input topics into an empty database up to the "
        "log's end offsets, then compare every account's checksum with the live ledger. "
        "Refused (exit 6) when the log no longer holds what the ledger covers.",
        epilog=base.examples(
            "creditledger replay",
            "creditledger replay --offsets-from replay-manifest.json --manifest again.json",
        ),
    )
    replay.add_argument(
        "--target-database-url",
        default=None,
        help="an empty database (default: a new one beside the live one)",
    )
    replay.add_argument(
        "--manifest",
        default="replay-manifest.json",
        help="where the manifest (offsets, price book, result) is written",
    )
    replay.add_argument(
        "--offsets-from",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="a previous manifest: replay up to its end offsets, to reproduce it",
    )
    replay.set_defaults(handler=_replay)


def _add_reprice(sub: Any) -> None:
    reprice = sub.add_parser(
        "reprice",
        help="re-rate historical usage under another price book",
        description="Re-rate the calls whose occurred_at falls in [--from, --to) under another "
        "price book, read from the usage topic; live state is not touched. Refused (exit 6) when "
        "the log no longer holds the window's calls.",
        epilog=base.examples(
            "creditledger reprice --price-book new.json --from 2026-11-01 --to 2026-11-30"
        ),
    )
    reprice.add_argument(
        "--price-book", required=True, type=Path, metavar="FILE", help="a JSON price book"
    )
    reprice.add_argument(
        "--from",
        dest="from_",
        type=base.instant,
        required=True,
        metavar="INSTANT",
        help="first occurred_at included; " + base.INSTANT_HELP,
    )
    reprice.add_argument(
        "--to",
        type=base.end_instant,
        required=True,
        metavar="INSTANT",
        help="first occurred_at excluded; " + base.END_INSTANT_HELP,
    )
    reprice.add_argument("--output", default="reprice.csv", help="the report (CSV)")
    reprice.set_defaults(handler=_reprice)


async def with_pool(work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    settings = runtime.resolve_settings(start_stack=False)
    assert settings.database_url is not None
    await migrate(settings.database_url)
    pool = await create_pool(settings.database_url)
    try:
        return await work(pool)
    finally:
        await pool.close()


def _balance(args: argparse.Namespace) -> int:
    from services.history import balance_as_of

    async def work(pool: asyncpg.Pool) -> int:
        result = await balance_as_of(pool, args.account_id, args.as_of, by=args.by)
        if result is None:
            when = args.as_of.isoformat()
            raise base.CliError(
                f"{args.account_id}: no ledger entry at or before {when}", base.NOT_FOUND
            )
        print(json.dumps(result.to_json(), indent=2, default=str))
        return base.OK

    return asyncio.run(with_pool(work))


def _export(args: argparse.Namespace) -> int:
    from services.history import export_ledger

    async def work(pool: asyncpg.Pool) -> int:
        # A blocking open once, before streaming: nothing else runs on this loop meanwhile.
        out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115, ASYNC230
        try:
            with progress.bar("exporting ledger rows") as bar:
                rows = await export_ledger(
                    pool,
                    out,
                    args.format,
                    from_=args.from_,
                    to=args.to,
                    account_id=args.account,
                    by=args.by,
                    progress=lambda written: bar.update(completed=written),
                )
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        print(f"exported {rows} ledger rows", file=sys.stderr)
        return base.OK

    return asyncio.run(with_pool(work))


def _replay(args: argparse.Namespace) -> int:
    from schemas.price_book import versions_from_json
    from services.history.coverage import LogGapError
    from services.history.replay import replay

    settings = runtime.resolve_settings(start_stack=False)
    assert settings.database_url is not None

    async def run() -> int:
        target = args.target_database_url or await _new_database_beside(str(settings.database_url))
        pinned, earlier = None, {}
        if args.offsets_from is not None:
            earlier = json.loads(args.offsets_from.read_text())
            pinned = {
                t: {int(p): o for p, o in ps.items()} for t, ps in earlier["end_offsets"].items()
            }
        versions = None
        if args.offsets_from is not None and "price_book" in earlier:
            versions = versions_from_json(earlier["price_book"])  # the same prices too
        try:
            with progress.bar("replaying input records") as bar:
                manifest = await replay(
                    settings,
                    target,
                    pinned,
                    versions,
                    progress=lambda done, total: bar.update(completed=done, total=total),
                )
        except LogGapError as gap:  # the log lacks records the ledger has: no answer
            raise base.CliError(str(gap), base.LOG_GAP) from None
        Path(args.manifest).write_text(json.dumps(manifest.to_json(), indent=2))  # noqa: ASYNC240
        verdict = "EQUAL to" if manifest.equal else "DIFFERENT from"
        print(
            f"replayed {manifest.entries} entries of {manifest.accounts} accounts into {target} "
            f"in {manifest.seconds:.1f} s: {verdict} the live ledger; manifest {args.manifest}"
        )
        for account in manifest.differing_accounts[:20]:
            print(f"DIFFERS {account}")
        return base.OK if manifest.equal else base.FAILED

    return asyncio.run(run())


def _reprice(args: argparse.Namespace) -> int:
    from services.history.coverage import LogGapError
    from services.history.reprice import load_price_book, reprice, totals, write_report

    settings = runtime.resolve_settings(start_stack=False)
    try:
        book = load_price_book(args.price_book)
    except (OSError, ValueError) as error:
        raise base.CliError(f"{args.price_book}: {error}", base.USAGE) from None

    async def work(pool: asyncpg.Pool) -> int:
        try:
            with progress.bar("re-rating calls") as bar:
                rows = await reprice(
                    settings,
                    pool,
                    book,
                    args.from_,
                    args.to,
                    progress=lambda calls: bar.update(completed=calls),
                )
        except LogGapError as gap:  # the log lacks calls the ledger has: no report
            raise base.CliError(str(gap), base.LOG_GAP) from None
        with open(args.output, "w", newline="") as out:  # noqa: ASYNC230 (once, at the end)
            write_report(rows, out)
        t = totals(rows.values())
        print(
            f"{t.calls} calls ({t.failed} failed, refunded in full under either book): "
            f"charged {t.charged}, under {book.version} {t.repriced} ({t.difference:+d}); "
            f"besides the prices: refunded {t.refunded}, owed {t.owed}; "
            f"report {args.output}"
        )
        return base.OK

    return asyncio.run(with_pool(work))


async def _new_database_beside(live_url: str) -> str:
    name = "replay_" + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    conn = await asyncpg.connect(live_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return live_url.rsplit("/", 1)[0] + "/" + name
