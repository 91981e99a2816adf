"""The rebuild's set-based SQL, the projector's fold and the point-in-time answers, on Postgres,
over ledgers in the issue 12 shape written by hand (tests/ledger_shapes.py: scheduled grants and
their activation, overage payments, owed consumes, captures; and a ledger from before it), so
they hold whatever the writer is doing: the projector's models (and the usage credits the
writer's rule gives those entries), the audit's fresh fold and a rebuild all agree, and equal
the hand-computed figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest

from projections.audit import audit
from projections.balance.apply import buckets_by_kind
from projections.balance.store import read_view
from projections.rebuild import rebuild
from projections.runner import apply_entries
from services.api.reads.grants import GRANTS_PAGE, grant_json
from services.history.as_of import TimeAxis, balance_as_of, fold_entries
from services.platform.settings import Settings
from tests.integration.ledger_pool import pool_with_books, write_usage_credits
from tests.ledger_shapes import REPORT, SCAN, T0, Ledger, hours, legacy, story

pytestmark = pytest.mark.integration
MODELS = {
    "balance_view": "SELECT * FROM balance_view ORDER BY account_id",
    "grants_view": "SELECT * FROM grants_view ORDER BY account_id, grant_id",
    "activity_days": "SELECT * FROM activity_days ORDER BY account_id, day",
    "endpoint_credits": "SELECT account_id, endpoint, day, credits FROM endpoint_usage"
    " WHERE credits <> 0 ORDER BY account_id, endpoint, day",
}


def backdated() -> Ledger:
    book = Ledger("back")
    book.call("x1", hours(6), [], owed=7)
    book.grant("g", 20, "purchased", hours(10), effective_at=hours(5), paid=7)
    book.call("x2", hours(7), [("g", 4)])
    return book


BOOKS = (story(), legacy(), backdated())


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with pool_with_books(namespace.database_url, BOOKS) as db:
        yield db


async def project(pool: asyncpg.Pool, cut: int, upto: int | None = None) -> None:
    """What the projector does with the ledger topic (entries up to seq `upto`), in two batches
    split at `cut`."""
    messages = [e for book in BOOKS for e in book.entries if upto is None or e.seq <= upto]
    ordered = sorted(messages, key=lambda e: (e.seq > cut, e.account_id, e.seq))
    batches = [[e for e in ordered if e.seq <= cut], [e for e in ordered if e.seq > cut]]
    for batch in batches:
        async with pool.acquire() as conn, conn.transaction():
            await apply_entries(conn, batch)


async def models(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in MODELS.items()}


async def test_projector_audit_and_rebuild_agree_on_the_new_shapes(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    await project(pool, cut=8)  # the scheduled grant's issue and its activation apart
    assert (await audit(pool)).drifts == []
    projected = await models(pool)

    grants = {(r["account_id"], r["grant_id"]): r for r in projected["grants_view"]}
    assert {k: (r["state"], r["amount"], r["remaining"]) for k, r in grants.items()} == {
        ("back", "g"): ("active", 20, 9),
        ("legacy", "old"): ("active", 10, 0),
        ("story", "sub"): ("expired", 100, 0),
        ("story", "next"): ("active", 50, 0),
        ("story", "gift"): ("active", 20, 12),
        ("story", "later"): ("voided", 40, 0),
    }
    days = {(r["account_id"], r["day"]): (r["scans"], r["credits"], r["refunds"])
            for r in projected["activity_days"]}  # fmt: skip
    assert days == {
        ("back", date(2026, 11, 21)): (2, 11, 0),
        ("legacy", date(2026, 11, 21)): (2, 10, 0),
        ("story", date(2026, 11, 21)): (1, 80, 35),
        ("story", date(2026, 11, 22)): (1, 45, 0),
        ("story", date(2026, 11, 23)): (1, 6, 0),
    }
    credits = {(r["account_id"], r["endpoint"], r["day"]): r["credits"]
               for r in projected["endpoint_credits"]}  # fmt: skip
    assert credits[("story", REPORT, date(2026, 11, 22))] == 45
    assert credits[("story", SCAN, date(2026, 11, 21))] == 80

    report = await rebuild(pool, namespace.projector_group, chunk_accounts=2)
    assert report is not None and report.accounts == 3
    assert (await audit(pool)).drifts == []
    assert await models(pool) == projected  # the SQL's figures are the fold's, row for row


async def test_a_scheduled_grant_rebuilt_before_its_activation(
    pool: asyncpg.Pool, namespace: Settings
) -> None:
    # Only the story's first two entries projected and rebuilt: `next` is still scheduled.
    await pool.execute("DELETE FROM ledger_entries WHERE seq > 2")
    await write_usage_credits(pool)
    await project(pool, cut=1, upto=2)
    projected = await models(pool)
    await rebuild(pool, namespace.projector_group)
    assert await models(pool) == projected
    assert (await audit(pool)).drifts == []
    row = await pool.fetchrow("SELECT * FROM grants_view WHERE grant_id = 'next'")
    assert row is not None and (row["state"], row["amount"], row["remaining"]) == (
        "scheduled", 50, 0,
    )  # fmt: skip
    view = await read_view(pool, "story")
    assert view is not None and (view.balance, view.scheduled) == (100, 50)
    assert buckets_by_kind(view) == [{"kind": "subscription", "amount": 100, "balance": 100}]
    # The grants read lists it as a user expects: scheduled, not archived, covered from then.
    listed = await pool.fetch(GRANTS_PAGE, "story", None, None, None, False, None, T0,
                              None, 25)  # fmt: skip
    by_id = {r["grant_id"]: grant_json(r) for r in listed}
    assert (by_id["next"]["state"], by_id["next"]["archived"]) == ("scheduled", False)
    assert by_id["next"]["metadata"] == {}  # `granted` and `scheduled` are the row's figures
    covering = await pool.fetch(GRANTS_PAGE, "story", hours(30), None, None, False, None, T0,
                                None, 25)  # fmt: skip
    assert sorted(r["grant_id"] for r in covering) == ["next", "sub"]
    before = await pool.fetch(GRANTS_PAGE, "story", hours(1), None, None, False, None, T0,
                              None, 25)  # fmt: skip
    assert [r["grant_id"] for r in before] == ["sub"]


async def test_balance_as_of_equals_the_fold_and_today_the_balance_view(
    pool: asyncpg.Pool,
) -> None:
    await project(pool, cut=100)
    axes: tuple[TimeAxis, ...] = ("recorded", "occurred")
    for book in BOOKS:
        rows = [book.row(e) for e in book.entries]
        instants = {T0 + timedelta(days=400)}
        for e in book.entries:
            for moment in (e.occurred_at, e.recorded_at):
                instants |= {moment - timedelta(microseconds=1), moment}
        for moment in sorted(instants):
            for by in axes:
                stored = await balance_as_of(pool, book.account_id, moment, by)
                assert stored == fold_entries(book.account_id, rows, moment, by), (moment, by)
        now = await balance_as_of(pool, book.account_id, T0 + timedelta(days=400))
        view = await read_view(pool, book.account_id)
        assert now is not None and view is not None
        assert (now.balance, now.scheduled, now.overage, now.unbucketed) == (
            view.balance, view.scheduled, view.overage, view.unbucketed,
        )  # fmt: skip
        assert now.to_json()["buckets"] == buckets_by_kind(view)
