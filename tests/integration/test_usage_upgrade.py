"""Migration 0020 (the writer owns `endpoint_usage`): from the state an old projector leaves, it
applies only once every account's ledger is at or below its checkpoint (the old usage model's
credits then cover every entry, and the new writer adds its own); entries the old projector had
not applied yet stop it, changing nothing, until the projector catches up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.audit import audit
from projections.runner import apply_entries
from services.platform.postgres import migrate
from services.platform.settings import Settings
from tests.integration.ledger_pool import pool_with_books
from tests.ledger_shapes import legacy, story

pytestmark = pytest.mark.integration
MIGRATION = "0020_writer_owns_usage.sql"
BOOKS = (story(), legacy())
FORGET = "DELETE FROM schema_migrations WHERE name = '0020_writer_owns_usage.sql'"


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with pool_with_books(namespace.database_url, BOOKS) as db:
        await db.execute(FORGET)  # the ledger and usage as an old writer and projector left them
        yield db


async def project(pool: asyncpg.Pool, upto: int | None = None) -> None:
    entries = [e for book in BOOKS for e in book.entries if upto is None or e.seq <= upto]
    async with pool.acquire() as conn, conn.transaction():
        await apply_entries(conn, sorted(entries, key=lambda e: (e.account_id, e.seq)))


async def applied(pool: asyncpg.Pool) -> bool:
    found = await pool.fetchval("SELECT count(*) FROM schema_migrations WHERE name = $1", MIGRATION)
    return bool(found)


async def test_entries_the_projector_has_not_applied_stop_the_upgrade(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    assert namespace.database_url is not None
    with pytest.raises(asyncpg.RaiseError, match="let the projector catch up"):
        await migrate(namespace.database_url)  # no balance_view row for either account
    assert not await applied(pool)
    await project(pool, upto=3)  # some of each account's entries, not all
    with pytest.raises(asyncpg.RaiseError, match="let the projector catch up"):
        await migrate(namespace.database_url)
    assert not await applied(pool)


async def test_a_caught_up_projector_upgrades_cleanly(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    assert namespace.database_url is not None
    await project(pool)
    # A ledger message still in the outbox is one the projector cannot have applied yet.
    await pool.execute(
        "INSERT INTO outbox (account_id, topic, value) VALUES ('story', 'credits.ledger.v1', 'x')"
    )
    with pytest.raises(asyncpg.RaiseError, match="let the projector catch up"):
        await migrate(namespace.database_url)
    assert not await applied(pool)
    await pool.execute("DELETE FROM outbox")
    usage_before = await pool.fetch("SELECT * FROM endpoint_usage ORDER BY 1, 2, 3")
    assert await migrate(namespace.database_url) == [MIGRATION]
    assert await pool.fetch("SELECT * FROM endpoint_usage ORDER BY 1, 2, 3") == usage_before
    assert (await audit(pool)).drifts == []


async def test_an_empty_ledger_upgrades(namespace: Settings) -> None:
    assert namespace.database_url is not None
    pool = await asyncpg.connect(namespace.database_url)
    try:
        await pool.execute(FORGET)
        assert await migrate(namespace.database_url) == [MIGRATION]
    finally:
        await pool.close()
