"""`creditledger`: the command line (docs/contract.md's CLI table; docs/operations.md).

Each command module adds its sub-commands with `add_parsers(sub)` and gives each a handler
(`set_defaults(handler=...)`) that returns an exit code; failures are one line on stderr with
the exit codes of services/cli/base.py, never a traceback (unless --traceback).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from services.bench import cli as bench_cli
from services.cli import admin_cmds, base, errors, history_cmds, serve_cmds, stack_cmds
from services.platform.logs import configure_logging
from services.platform.settings import Settings
from services.webhooks import cli as webhooks_cli

DESCRIPTION = """\
An event-sourced prepaid-credits ledger: Kafka in, a Postgres ledger, read models, an HTTP API.
Settings come from CREDITLEDGER_* environment variables (docs/operations.md); with no
CREDITLEDGER_KAFKA_BOOTSTRAP / CREDITLEDGER_DATABASE_URL, the local stack's are used."""

EPILOG = (
    base.examples(
        "creditledger stack up && creditledger serve --detach && creditledger demo",
        "creditledger balance acct_42 --as-of 2026-11-21T10:00:00Z",
        "creditledger stack up --help   # every command has its own help",
    )
    + "\n\n"
    + base.EXIT_CODES_HELP
)


# The services and the bench keep aiokafka's warnings and errors: they run on through them.
LONG_RUNNING = ("serve", "writer", "projector", "api", "demo", "bench")


def package_version() -> str:
    try:
        return version("creditledger")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = base.Parser(prog="creditledger", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"creditledger {package_version()}")
    parser.add_argument(
        "--traceback", action="store_true", help="on an error, print the whole traceback too"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack_cmds.add_parsers(sub)
    serve_cmds.add_parsers(sub)
    admin_cmds.add_parsers(sub)
    history_cmds.add_parsers(sub)
    # Commands other packages define, one `add_parser(sub)` line each; a parser that sets no
    # handler gets its module's `command(args)` (see _adopt_handlers).
    bench_cli.add_parser(sub)
    webhooks_cli.add_parser(sub)
    _adopt_handlers(sub, {"bench": bench_cli.command, "webhooks": webhooks_cli.command})
    return parser


def _adopt_handlers(sub: Any, handlers: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    for name, handler in handlers.items():
        command = sub.choices[name]
        if command.get_default("handler") is None:
            command.set_defaults(handler=handler)


def main(argv: Sequence[str] | None = None) -> int:
    # JSON lines on stderr (console on a terminal), libraries' logs too (platform/logs.py).
    configure_logging(Settings())
    args = build_parser().parse_args(argv)
    if args.command not in LONG_RUNNING:
        # A one-shot command reports an unreachable broker in its own one line (exit 4).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    handler: Callable[[argparse.Namespace], int] = args.handler
    service = args.command in LONG_RUNNING
    return errors.run_reporting(lambda: handler(args), args.traceback, service)
