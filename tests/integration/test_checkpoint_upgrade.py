"""Migration 0016 upgrades a running system in place: the three per-model checkpoint rows of an
account become its one checkpoint (`balance_view.last_seq`, `last_source`), and the projector
resumes exactly where it was, at every cut of a ledger of every shape (a call whose entries the
cut splits still counts once). Checkpoints that disagree stop the migration, changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.audit import audit
from projections.runner import apply_entries
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import migrate
from services.platform.settings import Settings
from tests.integration.ledger_pool import pool_with_books
from tests.ledger_shapes import legacy, story

pytestmark = pytest.mark.integration
MIGRATION = "0016_one_checkpoint_per_account.sql"
BOOKS = (story(), legacy())
# The schema as it was before 0016: three checkpoint rows per account, as the old projector left
# them (every model at the view's seq, with the source of that entry).
DOWNGRADE = """
CREATE TABLE projection_checkpoints (
    account_id  text   NOT NULL,
    projection  text   NOT NULL,
    last_seq    bigint NOT NULL DEFAULT 0,
    last_source text,
    PRIMARY KEY (account_id, projection)
);
INSERT INTO projection_checkpoints (account_id, projection, last_seq, last_source)
SELECT v.account_id, p.projection, v.last_seq, v.last_source
FROM balance_view v CROSS JOIN (VALUES ('activity'), ('usage'), ('grants')) AS p(projection);
ALTER TABLE balance_view DROP COLUMN last_source;
DELETE FROM schema_migrations WHERE name = '0016_one_checkpoint_per_account.sql';
"""
# The projector's models; `endpoint_usage` is the writer's (its credits written with the books).
RESET_MODELS = """
TRUNCATE balance_view, activity_days, grants_view
"""


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with pool_with_books(namespace.database_url, BOOKS) as db:
        yield db


def ledger(upto: int | None = None) -> list[LedgerEntryMessage]:
    """The topic's order: each account's entries in seq order, accounts interleaved."""
    messages = [e for book in BOOKS for e in book.entries if upto is None or e.seq <= upto]
    return sorted(messages, key=lambda e: (e.seq, e.account_id))


async def project(pool: asyncpg.Pool, entries: list[LedgerEntryMessage]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await apply_entries(conn, entries)


async def test_the_projector_resumes_where_it_was_at_every_cut(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    assert namespace.database_url is not None
    last = max(e.seq for e in ledger())
    for cut in range(1, last):
        await pool.execute(RESET_MODELS)
        await project(pool, ledger(cut))
        await pool.execute(DOWNGRADE)
        assert await migrate(namespace.database_url) == [MIGRATION]
        assert await pool.fetchval("SELECT to_regclass('projection_checkpoints')") is None
        sources = {
            r["account_id"]: r["last_source"]
            for r in await pool.fetch("SELECT account_id, last_source FROM balance_view")
        }
        assert sources == {
            book.account_id: [e for e in book.entries if e.seq <= cut][-1].source for book in BOOKS
        }, cut
        await project(pool, ledger())  # redelivered from the start: the first `cut` change nothing
        assert (await audit(pool)).drifts == [], cut


async def test_checkpoints_that_disagree_stop_the_migration(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    assert namespace.database_url is not None
    await project(pool, ledger(4))
    await pool.execute(DOWNGRADE)
    await pool.execute(
        "UPDATE projection_checkpoints SET last_seq = 3"
        " WHERE account_id = 'story' AND projection = 'usage'"
    )
    with pytest.raises(asyncpg.RaiseError, match="disagree"):
        await migrate(namespace.database_url)
    # Rolled back whole: the old shape is intact, to be rebuilt and migrated again.
    assert await pool.fetchval("SELECT count(*) FROM projection_checkpoints") == 6
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'balance_view' AND column_name = 'last_source'"
        )
        == 0
    )
