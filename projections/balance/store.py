"""The balance read model's SQL: lock a batch's views, save them back. One round trip each.

A view row is also the account's checkpoint for every live model (`last_seq`, and `last_source`:
the source of the entry at `last_seq`, which activity needs to count a call once); see
projections/checkpoints.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from projections.balance.apply import BalanceView, GrantBalance
from services.platform.postgres import DbConnection

# Lock first, create only the missing rows (an INSERT .. ON CONFLICT over every account of every
# batch doubled the lock's cost).
LOCK_VIEWS = """
SELECT * FROM balance_view WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE
"""
CREATE_VIEWS = """
INSERT INTO balance_view (account_id) SELECT unnest($1::text[]) ORDER BY 1
ON CONFLICT (account_id) DO NOTHING
"""
SAVE_VIEWS = """
UPDATE balance_view v SET last_seq = s.last_seq, balance = s.balance, reserved = s.reserved,
       granted_total = s.granted_total, consumed_total = s.consumed_total, grants = s.grants,
       last_updated = s.last_updated, last_source = s.last_source
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
            $7::jsonb[], $8::timestamptz[], $9::text[])
     AS s(account_id, last_seq, balance, reserved, granted_total, consumed_total, grants,
          last_updated, last_source)
WHERE v.account_id = s.account_id
"""
READ_VIEW = "SELECT * FROM balance_view WHERE account_id = $1"


async def lock_views(
    conn: DbConnection, account_ids: Iterable[str]
) -> dict[str, tuple[BalanceView, str | None]]:
    """Per account: its view and `last_source`, the row locked for the transaction."""
    wanted = sorted(set(account_ids))
    rows = await conn.fetch(LOCK_VIEWS, wanted)
    if len(rows) < len(wanted):
        await conn.execute(CREATE_VIEWS, wanted)
        rows = await conn.fetch(LOCK_VIEWS, wanted)
    assert len(rows) == len(wanted), "every account of the batch has a locked view row"
    return {r["account_id"]: (view_from_row(r), r["last_source"]) for r in rows}


async def save_views(
    conn: DbConnection, views: Sequence[BalanceView], last_sources: Sequence[str | None]
) -> None:
    await conn.execute(
        SAVE_VIEWS,
        [v.account_id for v in views], [v.last_seq for v in views], [v.balance for v in views],
        [v.reserved for v in views], [v.granted_total for v in views],
        [v.consumed_total for v in views], [grants_json(v) for v in views],
        [v.last_updated for v in views], last_sources,
    )  # fmt: skip


async def read_view(conn: DbConnection | asyncpg.Pool, account_id: str) -> BalanceView | None:
    row = await conn.fetchrow(READ_VIEW, account_id)
    return view_from_row(row) if row is not None else None


def view_from_row(row: asyncpg.Record) -> BalanceView:
    # Positional: one per account of every batch (the lock reads them all).
    return BalanceView(
        row["account_id"], row["last_seq"], row["balance"], row["reserved"],
        row["granted_total"], row["consumed_total"],
        {gid: _grant_from_json(g) for gid, g in row["grants"].items()}, row["last_updated"],
    )  # fmt: skip


def grants_json(view: BalanceView) -> dict[str, Any]:
    return {
        gid: {
            "kind": g.kind, "amount": g.amount, "balance": g.balance,
            "expires_at": g.expires_at.isoformat() if g.expires_at else None,
            "closed": g.closed, "scheduled": g.scheduled,
        }
        for gid, g in view.grants.items()
    }  # fmt: skip


def _grant_from_json(d: dict[str, Any]) -> GrantBalance:
    expires_at = datetime.fromisoformat(d["expires_at"]) if d["expires_at"] else None
    return GrantBalance(
        d["kind"], d["amount"], d["balance"], expires_at, d.get("closed", False),
        d.get("scheduled", 0),
    )  # fmt: skip
