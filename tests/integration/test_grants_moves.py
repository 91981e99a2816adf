"""The grants model's only-moved rows (consumes and refunds): moved by the batch's net delta in
place, never read, and still refused as the per-entry fold refuses them (projections/grants).

Hand-built ledgers (tests/ledger_shapes.py) go through the projector's `apply_entries` in
batches cut where each test says; the audit folds the same ledger with the pure apply functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest

from projections.audit import audit
from projections.runner import apply_entries
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from tests.ledger_shapes import Ledger, hours

pytestmark = pytest.mark.integration


async def project(pool: asyncpg.Pool, batch: Sequence[LedgerEntryMessage]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await apply_entries(conn, batch)


async def remaining(pool: asyncpg.Pool, account_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT grant_id, remaining FROM grants_view WHERE account_id = $1", account_id
    )
    return {r["grant_id"]: r["remaining"] for r in rows}


async def test_runs_of_moves_across_batches_end_where_the_fold_ends(namespace: Settings) -> None:
    book = Ledger("moves")
    book.grant("a", 30, "purchased", hours(1))
    book.grant("b", 10, "gift", hours(1))
    book.call("r1", hours(2), [("b", 4)])
    book.call("r2", hours(3), [("b", 6), ("a", 5)])
    book.call("r3", hours(4), [("a", 7)], status=500)  # consumed, then refunded in the batch
    book.call("r4", hours(5), [("a", 2)])
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url)
    try:
        # The grants opened with the first call; each later batch only moves them.
        await project(pool, book.entries[:3])
        await project(pool, book.entries[3:6])
        await project(pool, book.entries[6:])
        assert await remaining(pool, "moves") == {"a": 23, "b": 0}
        assert (await audit(pool)).drifts == []
    finally:
        await pool.close()


async def test_a_run_below_zero_is_refused_though_its_net_is_not(namespace: Settings) -> None:
    book = Ledger("dip")
    book.grant("g", 5, "purchased", hours(1))
    book.call("r1", hours(2), [("g", 6)], status=500)  # -6 then +6: net 0, below zero between
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url)
    try:
        await project(pool, book.entries[:1])
        with pytest.raises(AssertionError, match="grant g below zero"):
            await project(pool, book.entries[1:])
        assert await remaining(pool, "dip") == {"g": 5}  # the batch wrote nothing
    finally:
        await pool.close()


async def test_a_move_of_a_grant_the_model_lacks_is_refused(namespace: Settings) -> None:
    book = Ledger("lost")
    book.grant("g", 5, "purchased", hours(1))
    book.call("r1", hours(2), [("g", 2)])
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url)
    try:
        await project(pool, book.entries[:1])
        await pool.execute("DELETE FROM grants_view WHERE account_id = 'lost'")
        with pytest.raises(KeyError):
            await project(pool, book.entries[1:])
        seq = await pool.fetchval("SELECT last_seq FROM balance_view WHERE account_id = 'lost'")
        assert seq == 1  # the checkpoint did not move past the refused entry
    finally:
        await pool.close()
