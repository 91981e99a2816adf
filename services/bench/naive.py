"""The naive baseline: one Postgres transaction per event (a ledger row and a balance update)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import asyncpg

from services.bench.workload import account_id

NAIVE_TABLES = """
DROP TABLE IF EXISTS bench_naive_ledger, bench_naive_balance;
CREATE TABLE bench_naive_ledger (LIKE ledger_entries INCLUDING ALL);
CREATE TABLE bench_naive_balance (account_id text PRIMARY KEY, seq bigint NOT NULL,
                                  balance bigint NOT NULL);
"""
UPDATE = """UPDATE bench_naive_balance SET seq = seq + 1, balance = balance - 1
            WHERE account_id = $1 RETURNING seq, balance"""
INSERT = """INSERT INTO bench_naive_ledger (account_id, seq, entry_id, delta, balance_after,
                reason, source, metadata, occurred_at, recorded_at)
            VALUES ($1, $2, $3, -1, $4, 'consume', $5, '{}'::jsonb, $6, now())"""


async def naive_rate(pool: asyncpg.Pool, events: int, accounts: int, deadline_s: float) -> float:
    """Events/s through one connection, each event its own transaction; stops at the deadline."""
    accounts = max(accounts, 1)
    await pool.execute(NAIVE_TABLES)
    await pool.executemany(
        "INSERT INTO bench_naive_balance VALUES ($1, 0, 1000000000)",
        [(account_id(a),) for a in range(accounts)],
    )
    occurred = datetime.now(UTC)
    done = 0
    async with pool.acquire() as conn:
        started = time.monotonic()
        deadline = started + deadline_s
        while done < events and time.monotonic() < deadline:
            account = account_id(done % accounts)
            async with conn.transaction():
                row = await conn.fetchrow(UPDATE, account)
                assert row is not None
                await conn.execute(
                    INSERT, account, row["seq"], uuid.uuid4(), row["balance"],
                    f"request:naive-{done}", occurred,
                )  # fmt: skip
            done += 1
        seconds = time.monotonic() - started
    await pool.execute("DROP TABLE bench_naive_ledger, bench_naive_balance")
    return done / seconds if seconds > 0 else 0.0
