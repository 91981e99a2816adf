"""`creditledger stack up|down|status|env`: the local Kafka and Postgres."""

from __future__ import annotations

import argparse
import json
from typing import Any

from services.cli import base, progress
from services.platform import stack


def add_parsers(sub: Any) -> None:
    group = sub.add_parser(
        "stack",
        help="the local Kafka and Postgres (started only when no URLs are configured)",
        description="A real Apache Kafka (KRaft) and PostgreSQL under .creditledger/stack "
        "(CREDITLEDGER_STACK_DIR), for `make run` and `make test`.",
        epilog=base.examples("creditledger stack up", 'eval "$(creditledger stack env)"'),
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "up",
        help="start whatever is not running yet; reuse what runs",
        description="Start Kafka and Postgres when not running: the first run fetches Kafka's "
        "jars with Maven (up to 10 minutes, cached in ~/.cache/creditledger) and runs initdb.",
        epilog=base.examples(
            "creditledger stack up", "CREDITLEDGER_STACK_DIR=/tmp/s creditledger stack up"
        ),
    ).set_defaults(handler=_up)
    actions.add_parser(
        "down",
        help="stop both servers (stopping what is stopped is no error)",
        description="Stop the local Kafka and Postgres; their data stays under the stack dir.",
        epilog=base.examples("creditledger stack down"),
    ).set_defaults(handler=_down)
    actions.add_parser(
        "status",
        help="pids, ports and data directories, as JSON",
        description="What runs, on which ports, with which data directories (JSON).",
        epilog=base.examples("creditledger stack status"),
    ).set_defaults(handler=_status)
    actions.add_parser(
        "env",
        help="print CREDITLEDGER_KAFKA_BOOTSTRAP= and CREDITLEDGER_DATABASE_URL= lines",
        description="The running stack's endpoints as environment lines, for other tools.",
        epilog=base.examples('eval "$(creditledger stack env)"'),
    ).set_defaults(handler=_env)


def _up(_: argparse.Namespace) -> int:
    with progress.phases() as phase:
        endpoints = stack.stack_up(progress=phase)
    print(f"Kafka    {endpoints.kafka_bootstrap}\nPostgres {endpoints.database_url}")
    return base.OK


def _down(_: argparse.Namespace) -> int:
    stack.stack_down()
    print("local stack stopped")
    return base.OK


def _status(_: argparse.Namespace) -> int:
    print(json.dumps(stack.stack_status(), indent=2, default=str))
    return base.OK


def _env(_: argparse.Namespace) -> int:
    running = stack.running_endpoints()
    if running is None:
        raise base.CliError(
            "the local stack is not running: `creditledger stack up`", base.NOT_FOUND
        )
    print(f"CREDITLEDGER_KAFKA_BOOTSTRAP={running.kafka_bootstrap}")
    print(f"CREDITLEDGER_DATABASE_URL={running.database_url}")
    return base.OK
