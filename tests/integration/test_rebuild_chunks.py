"""The rebuild's chunks (projections/rebuild_chunks.py), on the hand-built ledgers of
test_rebuild_shapes: computed two at a time they may finish out of order, and a rebuild that
dies then resumes with the ones left, ending equal to the fold; the swapped-in tables keep the
live tables' storage parameters (migration 0011's fillfactor)."""

from __future__ import annotations

import asyncpg
import pytest

from projections.audit import audit
from projections.rebuild import SWAPPED, _chunk, rebuild
from projections.rebuild_chunks import Chunk
from services.platform.settings import Settings
from tests.integration.test_rebuild_shapes import models, pool, project  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
CHUNKS = "SELECT after_account, last_account, done FROM projection_rebuild_chunks ORDER BY 1"
OPTIONS = "SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1::text[])"


async def test_a_rebuild_resumed_after_a_later_chunk_finished_first_equals_the_fold(
    pool: asyncpg.Pool,  # noqa: F811 - the fixture
    namespace: Settings,
) -> None:
    await project(pool, cut=8)
    projected = await models(pool)
    planned_only = await rebuild(
        pool, namespace.projector_group, chunk_accounts=1, stop_after_chunks=0
    )
    assert planned_only is None
    chunks = [tuple(r) for r in await pool.fetch(CHUNKS)]
    assert chunks == [("", "back", False), ("back", "legacy", False), ("legacy", None, False)]
    entries = await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE account_id = 'legacy'")
    async with pool.acquire() as conn, conn.transaction():  # the second finishes, then it dies
        assert await _chunk(conn, Chunk("back", "legacy")) == (1, entries)

    report = await rebuild(pool, namespace.projector_group, chunk_accounts=1)
    assert report is not None
    assert (report.resumed_from, report.accounts) == ("", 2)  # the first and the last left
    assert await models(pool) == projected
    assert (await audit(pool)).drifts == []


async def test_the_swapped_in_tables_keep_their_storage_parameters(
    pool: asyncpg.Pool,  # noqa: F811 - the fixture
    namespace: Settings,
) -> None:
    before = {r["relname"]: r["reloptions"] for r in await pool.fetch(OPTIONS, list(SWAPPED))}
    assert before["balance_view"] == ["fillfactor=50"]
    assert await rebuild(pool, namespace.projector_group) is not None
    after = {r["relname"]: r["reloptions"] for r in await pool.fetch(OPTIONS, list(SWAPPED))}
    assert after == before
