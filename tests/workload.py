"""A seeded mixed workload over a dozen accounts, and what its balances must come to."""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from tests.messages import at, usage

ACCOUNTS = [f"acct_{n:02d}" for n in range(12)]
GRANT_CREDITS = 10_000


def workload(seed: int, calls: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        usage(rng.choice(ACCOUNTS), f"r{seed}-{n}", rng.choice((200, 200, 200, 404, 500)),
              credits=rng.randint(0, 9), occurred_at=at(n / 100))
        for n in range(calls)
    ]  # fmt: skip


def expected_balances(events: list[dict[str, Any]]) -> dict[str, int]:
    balances = dict.fromkeys(ACCOUNTS, GRANT_CREDITS)
    for event in events:
        if event["status_code"] < 400:
            balances[event["account_id"]] -= event["credits"]
    return balances


async def balances(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT account_id, balance FROM balance_view")
    return {r["account_id"]: r["balance"] for r in rows}


async def ledger_sums(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT account_id, sum(delta)::bigint AS s FROM ledger_entries GROUP BY 1"
    )
    return {r["account_id"]: r["s"] for r in rows}
