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


async def test_only_a_string_endpoint_counts_in_usage_even_one_that_reads_as_a_number(
    pool: asyncpg.Pool,  # noqa: F811 - the fixture
    namespace: Settings,
) -> None:
    calls = await pool.fetch(
        "SELECT account_id, seq FROM ledger_entries WHERE reason = 'consume' AND delta < 0"
        " ORDER BY account_id, seq LIMIT 3"
    )
    assert len(calls) == 3
    named: list[str | int | bool] = ["7", 7, True]  # JSON "7", 7 and true (the codec encodes)
    for endpoint, (account_id, seq) in zip(named, calls, strict=True):
        await pool.execute(
            "UPDATE ledger_entries"
            " SET metadata = metadata || jsonb_build_object('endpoint', $3::jsonb)"
            " WHERE account_id = $1 AND seq = $2",
            account_id, seq, endpoint,
        )  # fmt: skip
    assert await rebuild(pool, namespace.projector_group) is not None
    assert (await audit(pool)).drifts == []  # the fold's usage: a string endpoint only
    rows = await pool.fetch("SELECT account_id FROM endpoint_usage WHERE endpoint IN ('7', 'true')")
    assert [r["account_id"] for r in rows] == [calls[0]["account_id"]]
