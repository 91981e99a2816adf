"""The batched state read (`creditledger_states`, services/api/reads/state_batches.py) against a
real Postgres: one statement reads several accounts, each as itself under row-level security,
and leaves the session as it found it (the owner, no account set)."""

from __future__ import annotations

import asyncio

import pytest

from services.api.reads.balance import STATES_AS_CUSTOMER, customer_fetch
from services.api.reads.state_batches import StateBatches
from services.platform.postgres import create_pool
from services.platform.settings import Settings

pytestmark = pytest.mark.integration
OWNER_AGAIN = (
    "SELECT (current_user = session_user, current_setting('creditledger.account_id', true))"
)


async def test_one_statement_reads_each_account_as_itself(namespace: Settings) -> None:
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url, 1, reset_sessions=False)  # one connection
    try:
        await pool.execute(
            "INSERT INTO writer_accounts (account_id, seq, balance)"
            " VALUES ('batch_a', 1, 10), ('batch_b', 2, 20), ('batch_c', 3, 30)"
        )
        rows = await customer_fetch(pool, STATES_AS_CUSTOMER, ["batch_b", "nobody", "batch_a"])
        assert [(r["account"], r["seq"], r["balance"]) for r in rows] == [
            ("batch_b", 2, 20), ("batch_a", 1, 10),
        ]  # fmt: skip
        async with pool.acquire() as conn:
            assert await conn.fetchval(OWNER_AGAIN) == (True, "")
            async with conn.transaction(readonly=True):
                await conn.fetch(STATES_AS_CUSTOMER, ["batch_c", "batch_a"])
                # The reader role holds to the transaction's end, under RLS: the last account.
                everyone = "SELECT array_agg(account_id ORDER BY account_id) FROM writer_accounts"
                assert await conn.fetchval(everyone) == ["batch_a"]
            assert await conn.fetchval(OWNER_AGAIN) == (True, "")
        batches = StateBatches(pool)
        read = await asyncio.gather(*(batches.read(a) for a in ("batch_c", "nobody", "batch_a")))
        assert [(s.state.account_id, s.state.balance) for s in read] == [
            ("batch_c", 30), ("nobody", 0), ("batch_a", 10),
        ]  # fmt: skip
    finally:
        await pool.close()
