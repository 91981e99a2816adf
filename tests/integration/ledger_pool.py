"""A pool on a namespace's database whose ledger holds hand-built books (tests/ledger_shapes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import asyncpg

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
        yield db
    finally:
        await db.close()
