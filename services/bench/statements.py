"""Where Postgres spends a phase: pg_stat_statements for the bench's database, reset before the
phase and read after it (the server's side of the profile; py-spy covers our processes).

The local stack preloads the module (services/platform/stack.py POSTGRES_SETTINGS); a server
started without it, or an account that may not create the extension, gives a note instead.
Execution time includes waits (locks, I/O), so a share here is of the statements' time, not of
Postgres's CPU, which `cpu_cores_*` gives.
"""

from __future__ import annotations

from typing import Any

import asyncpg

TOP_STATEMENTS = 8
QUERY_TEXT_CHARS = 100

RESET = """
SELECT pg_stat_statements_reset(
    0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0
)
"""
TOP = """
SELECT calls, total_exec_time AS total_ms, rows,
       left(regexp_replace(query, '\\s+', ' ', 'g'), $2) AS query,
       sum(total_exec_time) OVER () AS all_ms
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT $1
"""


async def start(pool: asyncpg.Pool) -> str | None:
    """Reset the database's statement statistics; a note when they cannot be had."""
    try:
        await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await pool.execute(RESET)
    except asyncpg.PostgresError as error:
        return f"no statement profile: {error}"
    return None


async def top(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """The statements with the most execution time since `start`, each with its share."""
    rows = await pool.fetch(TOP, TOP_STATEMENTS, QUERY_TEXT_CHARS)
    return [
        {
            "query": r["query"], "calls": r["calls"], "rows": r["rows"],
            "total_ms": round(r["total_ms"]), "ms_per_call": round(r["total_ms"] / r["calls"], 3),
            "share": round(r["total_ms"] / r["all_ms"], 3) if r["all_ms"] else None,
        }
        for r in rows
    ]  # fmt: skip


async def top_into(
    pool: asyncpg.Pool, result: dict[str, Any], key: str = "postgres_statements_ingest"
) -> str | None:
    """`top` as `key` in `result`; a note when it cannot be read (a server whose
    pg_stat_statements has other columns, say): the run goes on without it."""
    try:
        result[key] = await top(pool)
    except asyncpg.PostgresError as error:
        return f"no statement profile: {error}"
    return None


def lines(statements: list[dict[str, Any]]) -> list[str]:
    """The report's lines: share, total and per-call time, calls, the statement's start."""
    return [
        f"    {s['share'] or 0:>5.1%} {s['total_ms']:>7,} ms {s['ms_per_call']:>8} ms/call "
        f"{s['calls']:>6} calls  {s['query']}"
        for s in statements
    ]
