"""Postgres access: the pool and the migrations every service applies at start."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TypeAlias, TypeVar

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from services.platform.json_exact import loads_exact

# Any fixed number works: every process that migrates takes this advisory lock, so two
# services starting at once apply each migration exactly once.
log = logging.getLogger("creditledger.postgres")
T = TypeVar("T")

_MIGRATION_LOCK_KEY = 7_320_451_166
_JSONB_VERSION = b"\x01"  # jsonb's binary wire format: a version byte, then the JSON text


def _jsonb_encode(value: object) -> bytes:
    # orjson writes the same JSON values as json.dumps about ten times faster (every entry's
    # metadata and every account snapshot pass here); it refuses integers past 64 bits, which
    # json.dumps writes exactly, so those take the slow path. (Decoding: `loads_exact`, for the
    # same reason.)
    try:
        return _JSONB_VERSION + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return _JSONB_VERSION + json.dumps(value, separators=(",", ":")).encode()


def _jsonb_decode(data: bytes) -> object:
    assert data[:1] == _JSONB_VERSION, "unknown jsonb binary version"
    return loads_exact(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary format, so the same codec serves queries and COPY (the writer appends by COPY).
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )
    await conn.execute("SET TIME ZONE 'UTC'")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool `reset` that sends nothing (asyncpg still rolls back an open transaction)."""


async def create_pool(
    database_url: str,
    max_size: int = 10,
    statement_timeout_ms: int | None = None,
    *,
    reset_sessions: bool = True,
    warm: bool = False,
    on_connect: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """With `reset_sessions=False`, a released connection is not sent asyncpg's reset query
    (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL: a round trip per use), for pools whose
    users change nothing beyond their transaction (the API's: its settings are `SET LOCAL`).
    `warm`: every connection opened now, not by the first requests; `on_connect` runs on each
    new connection after our own set-up."""
    server_settings = {}
    if statement_timeout_ms is not None:
        server_settings["statement_timeout"] = str(statement_timeout_ms)

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        if on_connect is not None:
            await on_connect(conn)

    pool = await asyncpg.create_pool(
        database_url,
        min_size=max_size if warm else 1,
        max_size=max_size,
        init=init,
        server_settings=server_settings,
        reset=None if reset_sessions else _keep_session,
    )
    assert pool is not None
    return pool


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("schemas") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


async def migrate(database_url: str) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return those applied."""
    conn = await asyncpg.connect(database_url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY, sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for name, sql in _migration_files():
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != digest:
                    raise RuntimeError(f"migration {name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", name, digest
                )
            applied_now.append(name)
    finally:
        await conn.close()
    return applied_now


# What the SQL modules take: a plain connection or one borrowed from the pool.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


# Failures that say nothing about the batch: retrying the same batch later is right. Anything
# else (a constraint violated, a bug) ends the process rather than spin on the same input.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
    # Seen when the server drops a connection while asyncpg is between two protocol steps of a
    # transaction ("cannot switch to state …"): the connection is gone, the batch is intact.
    asyncpg.InternalClientError,
)

RETRY_BACKOFF_FIRST_S = 0.1
RETRY_BACKOFF_MAX_S = 5.0


async def retry_transient(operation: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `operation` until it succeeds or fails for a reason other than a transient one.

    Not bounded in attempts on purpose: while Postgres is away the work waits (a bound would only
    turn the outage into a crash-restart loop with the same effect); the backoff is bounded.
    """
    backoff_s = RETRY_BACKOFF_FIRST_S
    while True:
        try:
            return await operation()
        except TRANSIENT_ERRORS as error:
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(error).__name__,
                        error, backoff_s)  # fmt: skip
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, RETRY_BACKOFF_MAX_S)
