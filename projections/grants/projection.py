"""The grants model: read the rows the batch names, fold, write back. Two or three statements
(none for a batch naming no grant).

Most rows a batch names are only moved (consumes and refunds: `only_moves_remaining`): of those
just `remaining` is read and written; the rows a grant, activation, expiry or void entry names
are read whole and folded by `apply`."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from projections.checkpoints import Locked
from projections.grants.apply import (
    GrantKey,
    GrantRow,
    apply,
    moved_remaining,
    only_moves_remaining,
)
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
READ_REMAINING = """
SELECT g.account_id, g.grant_id, g.remaining FROM grants_view g
JOIN unnest($1::text[], $2::text[]) AS k(account_id, grant_id)
  ON g.account_id = k.account_id AND g.grant_id = k.grant_id
"""
# One statement: the grants new to the model inserted whole, the others (most: a consume moves
# one) updated in what a ledger entry can change, so most rows travel as 5 values, not 15.
# The three sets are disjoint (split on whether READ_GRANTS found the row, and on which read).
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
), only_moved AS (
    UPDATE grants_view v SET remaining = o.r
    FROM unnest($21::text[], $22::text[], $23::bigint[]) AS o(a, g, r)
    WHERE v.account_id = o.a AND v.grant_id = o.g
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
    keys = {(e.account_id, e.bucket.grant_id) for e in named if e.bucket is not None}
    whole = {
        (e.account_id, e.bucket.grant_id)
        for e in named
        if e.bucket is not None and not only_moves_remaining(e)
    }
    remaining = await _read_remaining(conn, sorted(keys - whole))
    # A row the store lacks is folded whole too: `apply` refuses the entry, as it always has.
    whole_keys = sorted(keys - remaining.keys())
    grants = await _read_whole(conn, whole_keys)
    found = set(grants)
    for entry in named:
        key = (entry.account_id, entry.bucket.grant_id) if entry.bucket is not None else None
        if key in remaining:
            remaining[key] = moved_remaining(remaining[key], entry)
        else:
            apply(grants, entry)
    opened = [k for k in whole_keys if k not in found]
    moved = [k for k in whole_keys if k in found]
    columns: list[list[Any]] = [[a for a, _ in opened], [g for _, g in opened]]
    for column in COLUMNS:
        values = [getattr(grants[k], column) for k in opened]
        if column == "applies_to":  # a list per row cannot ride in unnest: JSON text
            values = [json.dumps(list(v)) if v is not None else None for v in values]
        columns.append(values)
    rows = [grants[k] for k in moved]
    only_moved = sorted(remaining)
    await conn.execute(
        WRITE_GRANTS, *columns, [a for a, _ in moved], [g for _, g in moved],
        [r.remaining for r in rows], [r.state for r in rows], [r.closed_seq for r in rows],
        [a for a, _ in only_moved], [g for _, g in only_moved],
        [remaining[k] for k in only_moved],
    )  # fmt: skip


async def _read_remaining(conn: DbConnection, keys: list[GrantKey]) -> dict[GrantKey, int]:
    if not keys:
        return {}
    stored = await conn.fetch(READ_REMAINING, [a for a, _ in keys], [g for _, g in keys])
    return {(r[0], r[1]): r[2] for r in stored}


async def _read_whole(conn: DbConnection, keys: list[GrantKey]) -> dict[GrantKey, GrantRow]:
    if not keys:
        return {}
    stored = await conn.fetch(READ_GRANTS, [a for a, _ in keys], [g for _, g in keys])
    return {(r["account_id"], r["grant_id"]): row_to_grant(r) for r in stored}


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
