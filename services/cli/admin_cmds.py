"""`creditledger projections|prices|schemas`: read models, the price book, published schemas."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from services import runtime
from services.cli import base, progress
from services.cli.history_cmds import with_pool


def add_parsers(sub: Any) -> None:
    _add_projections(sub)
    _add_prices(sub)
    _add_schemas(sub)


def _add_projections(sub: Any) -> None:
    group = sub.add_parser(
        "projections",
        help="rebuild, audit or show the read models",
        description="The read models (balances, grants, activity) the projector keeps from "
        "the ledger; audit and rebuild also check and rebuild the usage credits the writer keeps.",
        epilog=base.examples("creditledger projections audit", "creditledger projections rebuild"),
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "rebuild",
        help="rebuild every read model from the ledger while live, then swap",
        description="Fold the whole ledger into shadow tables in chunks of accounts (resumable "
        "after an interruption), then swap them in with the projector's offsets in one "
        "transaction; reads keep being served meanwhile.",
        epilog=base.examples("creditledger projections rebuild"),
    ).set_defaults(handler=_rebuild)
    actions.add_parser(
        "audit",
        help="compare the read models with a fresh fold of the ledger (exit 1 on drift)",
        description="Fold the ledger afresh and compare every account's read models with it; "
        "each drift is one DRIFT line, and the exit code is 1 when any is found.",
        epilog=base.examples("creditledger projections audit"),
    ).set_defaults(handler=_audit)
    actions.add_parser(
        "status",
        help="how far each projection is behind the ledger, as JSON",
        description="Per projection: the ledger position it reached and its lag.",
        epilog=base.examples("creditledger projections status"),
    ).set_defaults(handler=_status)


def _add_prices(sub: Any) -> None:
    group = sub.add_parser(
        "prices",
        help="the versioned price book",
        description="Prices are data: each version applies to calls by their occurred_at.",
        epilog=base.examples("creditledger prices show", "creditledger prices set book.json"),
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_cmd = actions.add_parser(
        "set",
        help="append a version from a JSON file {effective_at, default_credits, prices}",
        description="Append a price-book version (the same as PUT /v1/admin/price-book). "
        "effective_at must lie at least max_future_skew_s ahead, so no call already "
        "charged is re-rated.",
        epilog=base.examples(
            "creditledger prices set book.json",
            'book.json: {"effective_at": "2026-12-01T00:00:00Z", "default_credits": 1, '
            '"prices": {"POST /v1/scan": 5}}',
        ),
    )
    set_cmd.add_argument("file", type=Path, help="the JSON price-book version")
    set_cmd.set_defaults(handler=_prices_set)
    actions.add_parser(
        "show",
        help="the version in force now and every version set",
        description="The price book as JSON: the version in force now and all versions.",
        epilog=base.examples("creditledger prices show"),
    ).set_defaults(handler=_prices_show)


def _add_schemas(sub: Any) -> None:
    group = sub.add_parser(
        "schemas",
        help="the published JSON Schemas, AsyncAPI and OpenAPI documents",
        description="The machine-readable contract in schemas/json.",
        epilog=base.examples("creditledger schemas export"),
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "export",
        help="write them to schemas/json (a test checks they are current)",
        description="Regenerate schemas/json from the pydantic models and the HTTP routes.",
        epilog=base.examples("creditledger schemas export && git diff --stat schemas/json"),
    ).set_defaults(handler=_schemas_export)


def _rebuild(_: argparse.Namespace) -> int:
    from projections.rebuild import rebuild

    settings = runtime.resolve_settings(start_stack=False)

    async def work(pool: asyncpg.Pool) -> int:
        with progress.bar("rebuilding read models") as bar:

            def folded(accounts: int, entries: int) -> None:
                bar.update(completed=accounts, text=f"folding ({entries:,} entries)")

            report = await rebuild(pool, settings.projector_group, folded)
        assert report is not None  # only a test stops a rebuild early
        if report.resumed_from:
            print(f"resumed after account {report.resumed_from!r}", file=sys.stderr)
        print(
            f"rebuilt {report.accounts} accounts from {report.entries} entries in "
            f"{report.seconds:.1f} s ({report.entries_per_s:,.0f} entries/s)"
        )
        return base.OK

    return asyncio.run(with_pool(work))


def _audit(_: argparse.Namespace) -> int:
    from projections.audit import audit

    async def work(pool: asyncpg.Pool) -> int:
        result = await audit(pool)
        for drift in result.drifts:
            print(f"DRIFT {drift.account_id} {drift.model}: {drift.detail}")
        print(
            f"audited {result.accounts} accounts, {result.entries} entries: "
            f"{len(result.drifts)} drifted"
        )
        return base.FAILED if result.drifts else base.OK

    return asyncio.run(with_pool(work))


def _status(_: argparse.Namespace) -> int:
    from projections.lag import projection_lag

    async def work(pool: asyncpg.Pool) -> int:
        lags = await projection_lag(pool)
        print(json.dumps([lag.to_json() for lag in lags], indent=2))
        return base.OK

    return asyncio.run(with_pool(work))


def _prices_set(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from schemas.price_book import PriceBookBody, StartsTooSoon, add_version

    settings = runtime.resolve_settings(start_stack=False)
    try:
        body = PriceBookBody.model_validate_json(args.file.read_bytes())
    except (OSError, ValidationError) as error:
        first = str(error).replace("\n", "; ")
        raise base.CliError(f"{args.file}: {first}", base.USAGE) from None

    async def work(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            try:
                version = await add_version(conn, body, settings.max_future_skew_s)
            except StartsTooSoon as too_soon:
                raise base.CliError(f"{args.file}: effective_at {too_soon}", base.USAGE) from None
        print(json.dumps({"version": version.version}))
        return base.OK

    return asyncio.run(with_pool(work))


def _prices_show(_: argparse.Namespace) -> int:
    from schemas.price_book import book_json, load_versions

    async def work(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            print(json.dumps(book_json(await load_versions(conn), datetime.now(UTC)), indent=2))
        return base.OK

    return asyncio.run(with_pool(work))


def _schemas_export(_: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export():
        print(f"wrote {path}")
    return base.OK
