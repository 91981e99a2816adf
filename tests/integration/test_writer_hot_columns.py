"""Migration 0021: the writer keeps an account's totals and bucket remainders in narrow columns
and rewrites its JSON snapshot only when the rest of the state changed (then the columns are
NULL). Usage leaves the snapshot as the grants wrote it; the writer's and the API's reads take
the columns over it and see the state the ledger holds. The rollback statement of
docs/operations.md folds the columns into the snapshot, after which the snapshot alone reads as
the same state."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.api.reads.balance import ACCOUNT_STATE, stored_state
from services.core.model import AccountState
from services.core.snapshot import state_from_json
from services.writer import store
from services.writer.state_cache import StateCache
from tests.messages import grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def fold_statement() -> str:
    """The SQL block of the 0021 paragraph in docs/operations.md, as an operator would copy it."""
    text = OPERATIONS.read_text()
    paragraph = text[text.index("- **0021**") :]
    found = re.search(r"```sql\n(.*?)```", paragraph, re.DOTALL)
    assert found is not None, "the 0021 paragraph gives its fold statement"
    return found.group(1)


async def api_state(pool: asyncpg.Pool, account_id: str) -> AccountState:
    return stored_state(account_id, await pool.fetchrow(ACCOUNT_STATE, account_id)).state


async def writer_state(pool: asyncpg.Pool, account_id: str) -> AccountState:
    """The row decoded as the writer decodes it (an empty cache: from the row itself)."""
    async with pool.acquire() as conn, conn.transaction():
        states = await store.lock_accounts(conn, [account_id], [], StateCache(1))
    return states[account_id]


async def snapshot_alone(pool: asyncpg.Pool, account_id: str) -> AccountState:
    row = await pool.fetchrow(
        "SELECT seq, balance, snapshot FROM writer_accounts WHERE account_id = $1", account_id
    )
    assert row is not None
    return state_from_json(account_id, row["seq"], row["balance"], row["snapshot"], {})


async def row(pool: asyncpg.Pool, account_id: str) -> dict[str, Any]:
    found = await pool.fetchrow(
        "SELECT snapshot, granted_total, consumed_total, bucket_remaining FROM writer_accounts"
        " WHERE account_id = $1",
        account_id,
    )
    assert found is not None
    return dict(found)


async def test_usage_writes_the_hot_columns_alone_and_every_reader_merges(driver: Driver) -> None:
    await driver.commands(grant("hot", 100, "g1", bucket="gift"), grant("hot", 50, "g2"))
    await driver.settled()
    granted = await row(driver.pool, "hot")
    # A grant changes the cold part: the whole snapshot, which holds the hot part too.
    assert (granted["granted_total"], granted["bucket_remaining"]) == (None, None)
    assert granted["snapshot"]["totals"] == [150, 0]
    await driver.usage(usage("hot", "r1", credits=30), usage("hot", "r2", credits=5))
    await driver.settled()
    used = await row(driver.pool, "hot")
    assert used["snapshot"] == granted["snapshot"], "usage left the snapshot as it was"
    assert (used["granted_total"], used["consumed_total"]) == (150, 35)
    assert sum(used["bucket_remaining"].values()) == 115
    for state in (await api_state(driver.pool, "hot"), await writer_state(driver.pool, "hot")):
        assert (state.balance, state.granted_total, state.consumed_total) == (115, 150, 35)
        assert {b.grant_id: b.remaining for b in state.buckets} == used["bucket_remaining"]
    stale = await snapshot_alone(driver.pool, "hot")
    assert stale.consumed_total == 0, "the snapshot alone is behind: the columns are needed"
    assert (await driver.view("hot"))["balance"] == 115


async def test_the_fold_statement_leaves_the_snapshot_alone_reading_the_same(
    driver: Driver,
) -> None:
    await driver.commands(grant("fold", 100, "g1", bucket="gift"), grant("fold", 40, "g2"))
    await driver.settled()
    await driver.usage(usage("fold", "r1", credits=70))
    await driver.settled()
    # A bucket from before `granted` was kept reads it as its snapshot's remaining: so must the
    # folded one.
    await driver.pool.execute(
        "UPDATE writer_accounts SET snapshot = snapshot #- '{buckets,g1,granted}'"
        " WHERE account_id = 'fold'"
    )
    merged = await api_state(driver.pool, "fold")
    assert merged.consumed_total == 70
    assert await writer_state(driver.pool, "fold") == merged
    folded = await driver.pool.execute(fold_statement())
    assert folded.startswith("UPDATE ") and folded != "UPDATE 0"
    after = await row(driver.pool, "fold")
    assert (after["granted_total"], after["consumed_total"], after["bucket_remaining"]) == (
        None, None, None,
    )  # fmt: skip
    assert await snapshot_alone(driver.pool, "fold") == merged
    assert await api_state(driver.pool, "fold") == merged
    await driver.usage(usage("fold", "r2", credits=10))  # the writer goes on from the fold
    await driver.settled()
    assert (await api_state(driver.pool, "fold")).balance == 60
    assert (await driver.view("fold"))["balance"] == 60
