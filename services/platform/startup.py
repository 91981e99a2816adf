"""Start-up waits for Postgres and Kafka: bounded, with exponential backoff, each wait logged.

A process started beside a Postgres that is still recovering (`CannotConnectNowError`), a server
not listening yet (`ConnectionRefusedError`) or a broker still electing its controller used to
exit at once. Start-up now retries what says "not ready yet" until `startup_wait_s` (a setting,
60 s by default) has passed, then fails with the last error. Anything else (a wrong password, a
missing database, a migration that does not apply) fails at once: waiting would not fix it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

log = logging.getLogger("creditledger.startup")
T = TypeVar("T")

# OSError covers ConnectionRefusedError, a reset, an unresolvable host and TimeoutError.
POSTGRES_NOT_READY: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.CannotConnectNowError,  # "the database system is starting up" / "in recovery"
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
)
KAFKA_NOT_READY: tuple[type[BaseException], ...] = (
    OSError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 2.0


async def wait_until_ready(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    not_ready: tuple[type[BaseException], ...],
    total_s: float,
    *,
    first_s: float = FIRST_WAIT_S,
    max_s: float = MAX_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`attempt()`'s result; while it fails with a `not_ready` error, try again after waits of
    `first_s`, doubling up to `max_s`, as long as the wait ends within `total_s` of the start.
    The last error is raised when the next wait would end past that bound."""
    started = clock()
    wait_s = first_s
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except not_ready as error:
            waited_s = clock() - started
            if waited_s + wait_s > total_s:
                if tries > 1:
                    log.error("%s: not ready after %d tries in %.1f s; giving up (bound %.0f s)",
                              what, tries, waited_s, total_s)  # fmt: skip
                raise
            log.warning("%s not ready (%s: %s); try %d again in %.2f s (%.1f s of %.0f s)",
                        what, type(error).__name__, error, tries + 1, wait_s, waited_s,
                        total_s)  # fmt: skip
        await sleep(wait_s)
        wait_s = min(wait_s * 2, max_s)
