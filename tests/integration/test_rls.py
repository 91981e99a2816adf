"""Row-level security, the second wall: under the API's reader role a query that forgets its
account filter still sees one account only."""

from __future__ import annotations

import asyncpg
import pytest

from services.api.reads.freshness import AS_CUSTOMER
from tests.messages import grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
ACCOUNT_TABLES = (
    "ledger_entries", "processed_requests", "balance_view", "activity_days", "endpoint_usage",
    "grants_view",
)  # fmt: skip


async def test_the_reader_role_sees_only_its_accounts_rows(driver: Driver) -> None:
    await driver.commands(grant("rls_a", 10, "ga"), grant("rls_b", 20, "gb"))
    await driver.settled()
    await driver.usage(usage("rls_a", "ra", credits=1), usage("rls_b", "rb", credits=2))
    await driver.settled()
    async with driver.pool.acquire() as conn:
        for table in ACCOUNT_TABLES:
            unfiltered = f"SELECT array_agg(DISTINCT account_id ORDER BY account_id) FROM {table}"  # noqa: S608
            assert await conn.fetchval(unfiltered) == ["rls_a", "rls_b"], table  # the owner
            async with conn.transaction(readonly=True):
                await conn.fetchval(AS_CUSTOMER, "rls_a")
                assert await conn.fetchval(unfiltered) == ["rls_a"], table
            async with conn.transaction(readonly=True):
                await conn.fetchval(AS_CUSTOMER, "nobody")
                assert await conn.fetchval(unfiltered) is None, table
        # The role and the account end with the transaction: the connection is the owner's again.
        assert await conn.fetchval("SELECT current_user") == await conn.fetchval(
            "SELECT session_user"
        )


@pytest.mark.parametrize(
    "statement", ["UPDATE balance_view SET balance = 0", "SELECT secret_sha256 FROM api_keys"]
)
async def test_the_reader_role_cannot_write_or_read_keys(driver: Driver, statement: str) -> None:
    await driver.commands(grant("rls_c", 10, "gc"))
    await driver.settled()
    async with driver.pool.acquire() as conn, conn.transaction():
        await conn.fetchval(AS_CUSTOMER, "rls_c")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
