"""Exceptions become one line on stderr and an exit code (services/cli/base.py lists them).

A traceback helps whoever debugs the code, not whoever runs a command against a database that
is down: the operator gets what failed, where, and which setting points there; `--traceback`
shows the rest.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import KafkaError

from services.cli import base
from services.platform.settings import Settings
from services.platform.stack import StackError


def run_reporting(work: Callable[[], int], show_traceback: bool, service: bool = False) -> int:
    """`work()`'s exit code; an exception as one line and its exit code. A `service` (a
    long-running process, whose log is read afterwards) also logs a bug's traceback."""
    try:
        return work()
    except KeyboardInterrupt:
        print("creditledger: interrupted", file=sys.stderr)
        return base.INTERRUPTED
    except SystemExit as exit_:
        if not isinstance(exit_.code, str):
            raise
        # resolve_settings' "nothing configured and no local stack" (also used by the services)
        print(f"creditledger: error: {exit_.code}", file=sys.stderr)
        return base.NOT_FOUND
    except Exception as error:  # every failure ends here: the one place that reports them
        code, message = classify(error)
        if show_traceback or (service and code == base.INTERNAL):
            traceback.print_exc()
        print(f"creditledger: error: {message}", file=sys.stderr)
        return code


def classify(error: BaseException) -> tuple[int, str]:
    if isinstance(error, base.CliError):
        return error.code, str(error)
    if isinstance(error, StackError):
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return base.FAILED, f"local stack: {first}"
    if _is_database(error):
        return base.DATABASE_UNREACHABLE, (
            f"Postgres at {_database_where()} is unreachable or refused the connection "
            f"({_one_line(error)}); check CREDITLEDGER_DATABASE_URL or `creditledger stack up`"
        )
    if _is_kafka(error):
        return base.KAFKA_UNREACHABLE, (
            f"Kafka at {_kafka_where()} is unreachable ({_one_line(error)}); check "
            "CREDITLEDGER_KAFKA_BOOTSTRAP or `creditledger stack up`"
        )
    return base.INTERNAL, (
        f"internal error: {type(error).__name__}: {_one_line(error)} "
        "(run again with --traceback for the details)"
    )


def _is_database(error: BaseException) -> bool:
    connection_errors = (
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidCatalogNameError,  # no such database
        asyncpg.InterfaceError,
    )
    if isinstance(error, connection_errors):
        return True
    # A refused or unresolvable address is an OSError; whose it is, the failing frame says.
    return isinstance(error, OSError) and _raised_in(error.__traceback__, "asyncpg")


def _is_kafka(error: BaseException) -> bool:
    if isinstance(error, KafkaError):
        return True
    return isinstance(error, OSError) and _raised_in(error.__traceback__, "aiokafka")


def _raised_in(trace: TracebackType | None, package: str) -> bool:
    while trace is not None:
        if f"/{package}/" in trace.tb_frame.f_code.co_filename:
            return True
        trace = trace.tb_next
    return False


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _database_where() -> str:
    url = Settings().database_url
    if not url:
        return "the local stack"
    parts = urlsplit(url)  # host, port and database only: never the password
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def _kafka_where() -> str:
    return Settings().kafka_bootstrap or "the local stack"
