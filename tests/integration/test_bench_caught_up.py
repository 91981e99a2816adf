"""The bench's catch-up check: its cheap sums say "behind" exactly when the lag does, so the
projector's tail is not slowed by the lag's join every poll (services/bench/workload.py)."""

from __future__ import annotations

import asyncpg

from projections.lag import projection_lag
from services.bench.workload import ENTRIES_UNPROJECTED
from services.platform.postgres import create_pool
from services.platform.settings import Settings


async def _both(pool: asyncpg.Pool) -> tuple[int, int]:
    unprojected = int(await pool.fetchval(ENTRIES_UNPROJECTED))
    behind = sum(lag.accounts_behind for lag in await projection_lag(pool))
    return unprojected, behind


async def test_the_sums_trail_exactly_when_an_account_does(namespace: Settings) -> None:
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url)
    try:
        assert await _both(pool) == (0, 0)
        await pool.execute(
            "INSERT INTO writer_accounts (account_id, seq, balance) VALUES ('a', 3, 0), ('b', 2, 0)"
        )
        await pool.execute("INSERT INTO balance_view (account_id, last_seq) VALUES ('a', 3)")
        # 'b' has no view row yet: both of its entries are unprojected.
        unprojected, behind = await _both(pool)
        assert unprojected == 2 and behind > 0
        await pool.execute("INSERT INTO balance_view (account_id, last_seq) VALUES ('b', 1)")
        unprojected, behind = await _both(pool)
        assert unprojected == 1 and behind > 0
        await pool.execute("UPDATE balance_view SET last_seq = 2 WHERE account_id = 'b'")
        assert await _both(pool) == (0, 0)
    finally:
        await pool.close()
