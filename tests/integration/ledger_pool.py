"""A pool on a namespace's database whose ledger holds hand-built books (tests/ledger_shapes.py),
with the endpoint usage credits the writer would have written with those entries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg

from projections.ledger_rows import ledger_by_account
from projections.usage import credits as usage
from services.platform.postgres import create_pool
from tests.ledger_shapes import Ledger, insert_books


@asynccontextmanager
async def pool_with_books(
    database_url: str | None, books: Iterable[Ledger]
) -> AsyncIterator[asyncpg.Pool]:
    assert database_url is not None
    db = await create_pool(database_url)
    try:
        await insert_books(db, books)
        await write_usage_credits(db)
        yield db
    finally:
        await db.close()


async def write_usage_credits(db: asyncpg.Pool) -> None:
    """`endpoint_usage.credits` as the writer leaves them for the ledger as it stands (the books
    are written straight into `ledger_entries`, not by a writer)."""
    folded: dict[usage.UsageKey, int] = {}
    async for _, entries in ledger_by_account(db):
        for entry in entries:
            usage.fold(folded, entry)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE endpoint_usage SET credits = 0 WHERE credits <> 0")
        await usage.add(conn, folded)
