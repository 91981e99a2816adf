"""`creditledger`: the command line (see the contract's CLI table)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import httpx

from services import runtime
from services.platform import stack
from services.platform.postgres import create_pool, migrate
from services.platform.settings import Settings

DETACHED_START_DEADLINE_S = 90.0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aiokafka narrates every group join at INFO; its warnings and errors still show.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    handler = {
        "stack": _stack, "serve": _serve, "writer": _serve, "projector": _serve, "api": _serve,
        "demo": _demo, "migrate": _migrate, "projections": _projections,
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
    projections.add_argument("action", choices=("rebuild", "audit"))
    return parser


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
    asyncio.run(runtime.serve(settings, components))
    return 0


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
    from projections.rebuild import rebuild

    settings = runtime.resolve_settings(start_stack=False)
    assert settings.database_url is not None

    async def run() -> int:
        await migrate(str(settings.database_url))
        pool = await create_pool(str(settings.database_url))
        try:
            if args.action == "rebuild":
                report = await rebuild(pool, _progress)
                rate = f"{report.entries_per_s:,.0f} entries/s"
                print(f"\rrebuilt {report.accounts} accounts from {report.entries} entries in "
                      f"{report.seconds:.1f} s ({rate})")  # fmt: skip
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


def _progress(accounts: int, entries: int) -> None:
    if accounts % 500 == 0:
        print(f"\rfolding: {accounts} accounts, {entries} entries", end="", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
