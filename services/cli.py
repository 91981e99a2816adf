"""`creditledger`: the command line (see the contract's CLI table)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services import runtime
from services.bench import cli as bench_cli
from services.platform import stack
from services.platform.logs import configure_logging
from services.platform.postgres import create_pool, migrate
from services.platform.settings import Settings

DETACHED_START_DEADLINE_S = 90.0


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging(Settings())  # JSON lines on stderr, libraries' logs too (platform/logs.py)
    args = _parser().parse_args(argv)
    handler = {
        "stack": _stack, "serve": _serve, "writer": _serve, "projector": _serve, "api": _serve,
        "demo": _demo, "migrate": _migrate, "projections": _projections,
        "balance": _balance, "export": _export, "replay": _replay, "reprice": _reprice,
        "prices": _prices, "schemas": _schemas, "bench": _bench,
    }[args.command]  # fmt: skip
    result: int = handler(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="creditledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stack_cmd = sub.add_parser("stack", help="local Kafka and Postgres")
    stack_cmd.add_argument("action", choices=("up", "down", "status", "env"))
    serve = sub.add_parser("serve", help="writer, projector and API in one process")
    serve.add_argument("--detach", action="store_true", help="run in the background; reuse if up")
    for name in runtime.COMPONENTS:
        sub.add_parser(name, help=f"run the {name} alone")
    sub.add_parser("demo", help="publish a demo load and print the balances read over HTTP")
    sub.add_parser("migrate", help="apply database migrations")
    projections = sub.add_parser("projections", help="rebuild or audit the read models")
    projections.add_argument("action", choices=("rebuild", "audit", "status"))
    balance = sub.add_parser("balance", help="an account's balance at a point in time")
    balance.add_argument("account_id")
    balance.add_argument("--as-of", required=True, type=_aware_time, help="ISO-8601 with offset")
    balance.add_argument("--by", choices=("recorded", "occurred"), default="recorded",
                         help="ledger time (what the ledger knew then) or event time")  # fmt: skip
    export = sub.add_parser("export", help="stream the ledger as csv, jsonl or parquet")
    export.add_argument("--from", dest="from_", type=_aware_time, default=None)
    export.add_argument("--to", type=_aware_time, default=None)
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--account", default=None)
    export.add_argument("--output", default="-", help="a file, or - for standard output")
    replay = sub.add_parser("replay", help="rebuild the ledger from Kafka into a fresh database")
    replay.add_argument(
        "--target-database-url", default=None, help="an empty database (default: a new one)"
    )
    replay.add_argument("--manifest", default="replay-manifest.json")
    replay.add_argument(
        "--offsets-from", type=Path, default=None,
        help="a previous manifest: replay up to its end offsets, to reproduce it",
    )  # fmt: skip
    bench_cli.add_parser(sub)
    schemas = sub.add_parser("schemas", help="write the topics' JSON Schemas to schemas/json")
    schemas.add_argument("action", choices=("export",))
    reprice = sub.add_parser("reprice", help="re-rate historical usage under another price book")
    reprice.add_argument("--price-book", required=True, type=Path, help="a JSON price book")
    reprice.add_argument("--from", dest="from_", type=_aware_time, required=True)
    reprice.add_argument("--to", type=_aware_time, required=True)
    reprice.add_argument("--output", default="reprice.csv", help="the scratch report (CSV)")
    prices = sub.add_parser("prices", help="the versioned price book")
    prices_sub = prices.add_subparsers(dest="action", required=True)
    prices_set = prices_sub.add_parser(
        "set", help="append a version: a JSON file {effective_at, default_credits, prices}"
    )
    prices_set.add_argument("file", type=Path)
    prices_sub.add_parser("show", help="the version in force now and every version set")
    return parser


def _aware_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +00:00)")
    return moment


def _stack(args: argparse.Namespace) -> int:
    if args.action == "up":
        endpoints = stack.stack_up()
        print(f"Kafka    {endpoints.kafka_bootstrap}\nPostgres {endpoints.database_url}")
    elif args.action == "down":
        stack.stack_down()
        print("local stack stopped")
    elif args.action == "status":
        print(json.dumps(stack.stack_status(), indent=2, default=str))
    else:
        running = stack.running_endpoints()
        if running is None:
            print("the local stack is not running: `creditledger stack up`", file=sys.stderr)
            return 1
        print(f"CREDITLEDGER_KAFKA_BOOTSTRAP={running.kafka_bootstrap}")
        print(f"CREDITLEDGER_DATABASE_URL={running.database_url}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = runtime.resolve_settings(start_stack=True)
    if getattr(args, "detach", False):
        return _serve_detached(settings)
    components = runtime.COMPONENTS if args.command == "serve" else (args.command,)
    _run_fast(runtime.serve(settings, components))
    return 0


def _run_fast(main: Coroutine[Any, Any, None]) -> None:
    """The services run on uvloop where it is installed (the read API's latency, mostly)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _api_answers(url: str) -> bool:
    try:
        body: object = httpx.get(f"{url}/healthz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return False
    return body == {"status": "ok"}


def _serve_detached(settings: Settings) -> int:
    url = _api_url(settings)
    if _api_answers(url):
        print(f"creditledger already serving at {url}")
        return 0
    log_path = runtime.local_state_dir() / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **_endpoint_env(settings)},
        )  # fmt: skip
    (runtime.local_state_dir() / "serve.pid").write_text(str(process.pid))
    deadline = time.monotonic() + DETACHED_START_DEADLINE_S
    while not _api_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            print(f"creditledger serve did not come up; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"creditledger serving at {url} (pid {process.pid}, log {log_path})")
    return 0


def _endpoint_env(settings: Settings) -> dict[str, str]:
    assert settings.kafka_bootstrap and settings.database_url and settings.admin_token
    return {
        "CREDITLEDGER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CREDITLEDGER_DATABASE_URL": settings.database_url,
        "CREDITLEDGER_ADMIN_TOKEN": settings.admin_token,
    }


def _demo(_: argparse.Namespace) -> int:
    from services.demo import run_demo

    settings = runtime.resolve_settings(start_stack=False)
    return asyncio.run(run_demo(settings, _api_url(settings)))


def _migrate(_: argparse.Namespace) -> int:
    settings = runtime.resolve_settings(start_stack=True)
    assert settings.database_url is not None
    applied = asyncio.run(migrate(settings.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _projections(args: argparse.Namespace) -> int:
    from projections.audit import audit
    from projections.lag import projection_lag
    from projections.rebuild import rebuild

    settings = runtime.resolve_settings(start_stack=False)
    assert settings.database_url is not None

    async def run() -> int:
        await migrate(str(settings.database_url))
        pool = await create_pool(str(settings.database_url))
        try:
            if args.action == "rebuild":
                report = await rebuild(pool, settings.projector_group, _progress)
                assert report is not None  # only a test stops a rebuild early
                rate = f"{report.entries_per_s:,.0f} entries/s"
                if report.resumed_from:
                    print(f"resumed after account {report.resumed_from!r}", file=sys.stderr)
                print(f"\rrebuilt {report.accounts} accounts from {report.entries} entries in "
                      f"{report.seconds:.1f} s ({rate})")  # fmt: skip
                return 0
            if args.action == "status":
                lags = await projection_lag(pool)
                print(json.dumps([lag.to_json() for lag in lags], indent=2))
                return 0
            result = await audit(pool)
            for drift in result.drifts:
                print(f"DRIFT {drift.account_id} {drift.model}: {drift.detail}")
            print(f"audited {result.accounts} accounts, {result.entries} entries: "
                  f"{len(result.drifts)} drifted")  # fmt: skip
            return 1 if result.drifts else 0
        finally:
            await pool.close()

    return asyncio.run(run())


async def _with_pool(work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
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
            print(f"{args.account_id}: no ledger entry at or before {args.as_of}", file=sys.stderr)
            return 1
        print(json.dumps(result.to_json(), indent=2, default=str))
        return 0

    return asyncio.run(_with_pool(work))


def _export(args: argparse.Namespace) -> int:
    from services.history import export_ledger

    async def work(pool: asyncpg.Pool) -> int:
        # A blocking open once, before streaming: nothing else runs on this loop meanwhile.
        out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115, ASYNC230
        try:
            rows = await export_ledger(
                pool, out, args.format, from_=args.from_, to=args.to, account_id=args.account
            )
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        print(f"exported {rows} ledger rows", file=sys.stderr)
        return 0

    return asyncio.run(_with_pool(work))


LOG_GAP_EXIT = 3  # replay / reprice refused: the Kafka log lacks what the ledger covers


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
            manifest = await replay(settings, target, pinned, versions)
        except LogGapError as gap:  # the log lacks records the ledger has: no answer
            print(gap, file=sys.stderr)
            return LOG_GAP_EXIT
        Path(args.manifest).write_text(json.dumps(manifest.to_json(), indent=2))  # noqa: ASYNC240
        verdict = "EQUAL to" if manifest.equal else "DIFFERENT from"
        print(
            f"replayed {manifest.entries} entries of {manifest.accounts} accounts into {target} "
            f"in {manifest.seconds:.1f} s: {verdict} the live ledger; manifest {args.manifest}"
        )
        for account in manifest.differing_accounts[:20]:
            print(f"DIFFERS {account}")
        return 0 if manifest.equal else 1

    return asyncio.run(run())


def _bench(args: argparse.Namespace) -> int:
    return bench_cli.command(args)


def _schemas(_: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export():
        print(f"wrote {path}")
    return 0


def _reprice(args: argparse.Namespace) -> int:
    from services.history.coverage import LogGapError
    from services.history.reprice import load_price_book, reprice, totals, write_report

    settings = runtime.resolve_settings(start_stack=False)
    book = load_price_book(args.price_book)

    async def work(pool: asyncpg.Pool) -> int:
        try:
            rows = await reprice(settings, pool, book, args.from_, args.to)
        except LogGapError as gap:  # the log lacks calls the ledger has: no report
            print(gap, file=sys.stderr)
            return LOG_GAP_EXIT
        with open(args.output, "w", newline="") as out:  # noqa: ASYNC230 (once, at the end)
            write_report(rows, out)
        t = totals(rows.values())
        print(f"{t.calls} calls ({t.failed} failed, refunded in full under either book): "
              f"charged {t.charged}, under {book.version} {t.repriced} ({t.difference:+d}); "
              f"besides the prices: refunded {t.refunded}, owed {t.owed}; "
              f"report {args.output}")  # fmt: skip
        return 0

    return asyncio.run(_with_pool(work))


def _prices(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from schemas.price_book import (
        PriceBookBody,
        StartsTooSoon,
        add_version,
        book_json,
        load_versions,
    )

    settings = runtime.resolve_settings(start_stack=False)
    body = None
    if args.action == "set":
        try:
            body = PriceBookBody.model_validate_json(args.file.read_bytes())
        except (OSError, ValidationError) as error:
            print(f"{args.file}: {error}", file=sys.stderr)
            return 2

    async def work(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            if body is None:
                print(json.dumps(book_json(await load_versions(conn), datetime.now(UTC)), indent=2))
                return 0
            try:
                version = await add_version(conn, body, settings.max_future_skew_s)
            except StartsTooSoon as too_soon:
                print(f"{args.file}: effective_at {too_soon}", file=sys.stderr)
                return 2
        print(json.dumps({"version": version.version}))
        return 0

    return asyncio.run(_with_pool(work))


async def _new_database_beside(live_url: str) -> str:
    name = "replay_" + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    conn = await asyncpg.connect(live_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return live_url.rsplit("/", 1)[0] + "/" + name


def _progress(accounts: int, entries: int) -> None:
    print(f"\rfolding: {accounts:,} accounts, {entries:,} entries", end="", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
