"""The grants model: read the rows the batch opens or closes, fold, write back. One or two
statements (none for a batch naming no grant).

Most rows a batch names are only moved (consumes and refunds: `only_moves_remaining`): those are
not read at all; the write adds the batch's net delta to `remaining` in place and returns what
it left, which is checked as `apply.moved_remaining` checks each entry (never below zero, at
any entry of the run). The rows a grant, activation, expiry or void entry names are read whole
and folded by `apply`."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from projections.checkpoints import Locked
from projections.grants.apply import (
    GrantKey,
    GrantRow,
    apply,
    only_moves_remaining,
)
from schemas.ledger import LedgerEntryMessage
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
# One statement: the grants new to the model inserted whole, the folded ones updated in what a
# ledger entry can change, and the only-moved ones (most: a consume moves one) moved by their
# net delta in place, returning what they hold after it. The three sets are disjoint (split on
# whether the batch opens or closes the row, and on whether READ_GRANTS found it).
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
), folded AS (
    UPDATE grants_view v SET remaining = m.r, state = m.st, closed_seq = m.cs
    FROM unnest($16::text[], $17::text[], $18::bigint[], $19::text[], $20::bigint[])
         AS m(a, g, r, st, cs)
    WHERE v.account_id = m.a AND v.grant_id = m.g
)
UPDATE grants_view v SET remaining = v.remaining + o.d
FROM unnest($21::text[], $22::text[], $23::bigint[]) AS o(a, g, d)
WHERE v.account_id = o.a AND v.grant_id = o.g
RETURNING v.account_id, v.grant_id, v.remaining
"""


async def apply_batch(conn: DbConnection, locked: Locked) -> None:
    named = [e for e in locked.fresh if e.bucket is not None]
    if not named:
        return
    # Every grant the batch names is written back.
    whole = {
        (e.account_id, e.bucket.grant_id)
        for e in named
        if e.bucket is not None and not only_moves_remaining(e)
    }
    whole_keys = sorted(whole)
    grants = await _read_whole(conn, whole_keys)
    found = set(grants)
    moves: dict[GrantKey, _Moves] = {}
    for entry in named:
        key = (entry.account_id, entry.bucket.grant_id) if entry.bucket is not None else None
        if key in whole:
            apply(grants, entry)
        elif key is not None:
            moves.setdefault(key, _Moves()).add(entry)
    opened = [k for k in whole_keys if k not in found]
    folded = [k for k in whole_keys if k in found]
    columns: list[list[Any]] = [[a for a, _ in opened], [g for _, g in opened]]
    for column in COLUMNS:
        values = [getattr(grants[k], column) for k in opened]
        if column == "applies_to":  # a list per row cannot ride in unnest: JSON text
            values = [json.dumps(list(v)) if v is not None else None for v in values]
        columns.append(values)
    rows = [grants[k] for k in folded]
    only_moved = sorted(moves)
    after = await conn.fetch(
        WRITE_GRANTS, *columns, [a for a, _ in folded], [g for _, g in folded],
        [r.remaining for r in rows], [r.state for r in rows], [r.closed_seq for r in rows],
        [a for a, _ in only_moved], [g for _, g in only_moved],
        [moves[k].net for k in only_moved],
    )  # fmt: skip
    _check_moved(moves, {(r[0], r[1]): r[2] for r in after})


class _Moves:
    """An only-moved grant's run in the batch: its net delta and the lowest its running sum
    reached (from 0), so that what the row held before is checked at every entry."""

    __slots__ = ("first", "low", "net")

    def __init__(self) -> None:
        self.net, self.low = 0, 0
        self.first: LedgerEntryMessage | None = None

    def add(self, entry: LedgerEntryMessage) -> None:
        if self.first is None:
            self.first = entry
        self.net += entry.delta
        self.low = min(self.low, self.net)


def _check_moved(moves: dict[GrantKey, _Moves], after: dict[GrantKey, int]) -> None:
    """`moved_remaining`'s rule over each run: the row existed (a row the store lacks is folded
    by `apply`, which refuses the entry, as it always has) and no entry took it below zero."""
    for key, run in moves.items():
        if key not in after:
            assert run.first is not None
            apply({}, run.first)  # raises: the grant is unknown to the model
        before = after[key] - run.net
        assert before + run.low >= 0, f"grant {key[1]} below zero"


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
