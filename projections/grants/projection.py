"""The grants model: read the rows the batch names, fold, write back. Two statements (none for
a batch naming no grant)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from projections.checkpoints import Locked
from projections.grants.apply import GrantKey, GrantRow, apply
from services.platform.postgres import DbConnection

NAME = "grants"
COLUMNS = (
    "kind", "amount", "remaining", "source", "state", "granted_seq", "granted_at", "priority",
    "effective_at", "expires_at", "applies_to", "name", "closed_seq",
)  # fmt: skip
# Read, not locked: the batch holds its accounts' checkpoint rows (projections/checkpoints.py),
# taken first in the transaction, so no other batch writes these accounts' grants until it
# commits; locking the rows again was a heap write per grant per batch.
READ_GRANTS = """
SELECT g.* FROM grants_view g
JOIN unnest($1::text[], $2::text[]) AS k(account_id, grant_id)
  ON g.account_id = k.account_id AND g.grant_id = k.grant_id
"""
# One statement: the grants new to the model inserted whole, the others (most: a consume moves
# one) updated in what a ledger entry can change, so most rows travel as 5 values, not 15.
# The two sets are disjoint (split on whether READ_GRANTS found the row).
WRITE_GRANTS = """
WITH opened AS (
    INSERT INTO grants_view (account_id, grant_id, kind, amount, remaining, source, state,
                             granted_seq, granted_at, priority, effective_at, expires_at,
                             applies_to, name, closed_seq)
    SELECT a, g, k, am, r, so, st, gs, ga, p, ef, ex, ap::jsonb, n, cs
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                $6::text[], $7::text[], $8::bigint[], $9::timestamptz[], $10::int[],
                $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::bigint[])
         AS t(a, g, k, am, r, so, st, gs, ga, p, ef, ex, ap, n, cs)
    ON CONFLICT (account_id, grant_id) DO UPDATE SET
        remaining = EXCLUDED.remaining, state = EXCLUDED.state, closed_seq = EXCLUDED.closed_seq
)
UPDATE grants_view v SET remaining = m.r, state = m.st, closed_seq = m.cs
FROM unnest($16::text[], $17::text[], $18::bigint[], $19::text[], $20::bigint[])
     AS m(a, g, r, st, cs)
WHERE v.account_id = m.a AND v.grant_id = m.g
"""


async def apply_batch(conn: DbConnection, locked: Locked) -> None:
    named = [e for e in locked.fresh if e.bucket is not None]
    if not named:
        return
    # Every grant the batch names is written back.
    keys = sorted({(e.account_id, e.bucket.grant_id) for e in named if e.bucket is not None})
    stored = await conn.fetch(READ_GRANTS, [a for a, _ in keys], [g for _, g in keys])
    grants: dict[GrantKey, GrantRow] = {
        (r["account_id"], r["grant_id"]): row_to_grant(r) for r in stored
    }
    found = set(grants)
    for entry in named:
        apply(grants, entry)
    opened = [k for k in keys if k not in found]
    moved = [k for k in keys if k in found]
    columns: list[list[Any]] = [[a for a, _ in opened], [g for _, g in opened]]
    for column in COLUMNS:
        values = [getattr(grants[k], column) for k in opened]
        if column == "applies_to":  # a list per row cannot ride in unnest: JSON text
            values = [json.dumps(list(v)) if v is not None else None for v in values]
        columns.append(values)
    rows = [grants[k] for k in moved]
    await conn.execute(
        WRITE_GRANTS, *columns, [a for a, _ in moved], [g for _, g in moved],
        [r.remaining for r in rows], [r.state for r in rows], [r.closed_seq for r in rows],
    )  # fmt: skip


def row_to_grant(row: asyncpg.Record) -> GrantRow:
    # Positional, not a dict of COLUMNS and `**`: one per grant a batch names, most of them
    # read back only to move `remaining`.
    applies_to = row["applies_to"]
    return GrantRow(
        row["kind"], row["amount"], row["remaining"], row["source"], row["state"],
        row["granted_seq"], row["granted_at"], row["priority"], row["effective_at"],
        row["expires_at"], tuple(applies_to) if applies_to is not None else None, row["name"],
        row["closed_seq"],
    )  # fmt: skip
