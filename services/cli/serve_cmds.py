"""`creditledger serve|writer|projector|api|demo|migrate`: running the services."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from services import runtime
from services.cli import base
from services.platform.postgres import migrate
from services.platform.settings import Settings

DETACHED_START_DEADLINE_S = 90.0


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="writer, projector and API in one process",
        description="Run the writer (Kafka -> ledger), the projector (ledger -> read models) "
        "and the HTTP API in this process; starts the local stack when no URLs are set. "
        "The admin token is CREDITLEDGER_ADMIN_TOKEN, else .creditledger/admin-token.",
        epilog=base.examples(
            "creditledger serve", "creditledger serve --detach   # log: .creditledger/serve.log"
        ),
    )
    serve.add_argument(
        "--detach", action="store_true", help="run in the background; reuse one that answers"
    )
    serve.set_defaults(handler=_serve)
    for name in runtime.COMPONENTS:
        sub.add_parser(
            name,
            help=f"run the {name} alone",
            description=f"Run only the {name} (scale each on its own; see docs/operations.md).",
            epilog=base.examples(f"creditledger {name}"),
        ).set_defaults(handler=_serve)
    sub.add_parser(
        "demo",
        help="publish a demo load and print the balances read over HTTP",
        description="Create two demo accounts, publish their grants and calls to Kafka and "
        "print each balance as the API serves it, beside the demo's own arithmetic.",
        epilog=base.examples("creditledger serve --detach && creditledger demo"),
    ).set_defaults(handler=_demo)
    sub.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply schemas/migrations/*.sql not applied yet, each in a transaction.",
        epilog=base.examples("creditledger migrate"),
    ).set_defaults(handler=_migrate)


def _serve(args: argparse.Namespace) -> int:
    settings = runtime.resolve_settings(start_stack=True)
    if getattr(args, "detach", False):
        return _serve_detached(settings)
    components = runtime.SERVE_COMPONENTS if args.command == "serve" else (args.command,)
    run_fast(runtime.serve(settings, components))
    return base.OK


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """The services run on uvloop where it is installed (the read API's latency, mostly)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def api_url(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def _api_answers(url: str) -> bool:
    try:
        body: object = httpx.get(f"{url}/healthz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return False
    return body == {"status": "ok"}


def _serve_detached(settings: Settings) -> int:
    url = api_url(settings)
    if _api_answers(url):
        print(f"creditledger already serving at {url}")
        return base.OK
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
            raise base.CliError(f"creditledger serve did not come up; see {log_path}", base.FAILED)
        time.sleep(0.2)
    print(f"creditledger serving at {url} (pid {process.pid}, log {log_path})")
    return base.OK


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
    return asyncio.run(run_demo(settings, api_url(settings)))


def _migrate(_: argparse.Namespace) -> int:
    settings = runtime.resolve_settings(start_stack=True)
    assert settings.database_url is not None
    applied = asyncio.run(migrate(settings.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return base.OK
