"""Point-in-time balances: what an account's ledger said at an instant.

Two time axes (see README.md):
- `by="recorded"` (default), ledger time: the prefix of the account's ledger, seq 1..S, where S is
  the highest seq with `recorded_at <= as_of`. Always a state the ledger really was in
  (`balance` equals entry S's `balance_after`), and the answer for a past instant never changes.
- `by="occurred"`, event time: every entry with `occurred_at <= as_of`, whatever seq. What the
  account held at that instant as far as the ledger knows *now*: a late event moves it, and the
  set need not be a prefix, so it can be a balance no entry ever showed.

The SQL aggregates server side in one round trip; `fold_entries` is the same fold in Python over
entry dicts, pure, the reference the tests hold the SQL to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from services.platform.postgres import DbConnection

TimeAxis = Literal["recorded", "occurred"]

# The summary both time axes compute over their `folded` entries (per bucket kind, then totals).
_SUMMARY_HEAD = """), kinds AS (
    SELECT bucket_kind AS kind,
           coalesce(sum(delta) FILTER (WHERE reason = 'grant'), 0)::bigint AS amount,
           sum(delta)::bigint AS balance
    FROM folded WHERE bucket_kind IS NOT NULL GROUP BY bucket_kind
)
SELECT count(*)::bigint AS entries,
       max(seq) AS seq,
       coalesce(sum(delta), 0)::bigint AS balance,
       coalesce(sum(reserved_delta), 0)::bigint AS reserved,
       coalesce(sum(delta) FILTER (WHERE reason = 'grant'), 0)::bigint AS granted_total,
       coalesce(-sum(delta) FILTER (WHERE reason IN ('consume', 'refund')), 0)::bigint
           AS consumed_total,
       max(recorded_at) AS last_recorded_at,
"""
_SUMMARY_TAIL = """       (SELECT array_agg(kind ORDER BY kind) FROM kinds) AS kinds,
       (SELECT array_agg(amount ORDER BY kind) FROM kinds) AS kind_amounts,
       (SELECT array_agg(balance ORDER BY kind) FROM kinds) AS kind_balances
FROM folded
"""

# Ledger time. The newest entry recorded by `as_of` is found walking the primary key
# (account_id, seq) backwards from the end, so the search costs the entries recorded after
# `as_of`; the fold then reads the prefix 1..S once. The two fixed-shape checks (no gaps,
# balance == balance_after) come back with the figures.
BALANCE_AS_OF_RECORDED_SQL = "".join(  # constant pieces only: no input reaches the text
    (
        """
WITH upto AS (
    SELECT seq, balance_after FROM ledger_entries
    WHERE account_id = $1 AND recorded_at <= $2
    ORDER BY seq DESC LIMIT 1
), folded AS (
    SELECT e.seq, e.delta, e.reason, e.bucket_kind, e.reserved_delta, e.recorded_at
    FROM ledger_entries e, upto
    WHERE e.account_id = $1 AND e.seq <= upto.seq
""",
        _SUMMARY_HEAD,
        "       (SELECT balance_after FROM upto) AS balance_after,\n",
        _SUMMARY_TAIL,
    )
)

# Event time: no index serves occurred_at, so this reads all of the account's entries (one range
# of the primary key) and keeps those that occurred by `as_of`.
BALANCE_AS_OF_OCCURRED_SQL = "".join(  # constant pieces only: no input reaches the text
    (
        """
WITH folded AS (
    SELECT seq, delta, reason, bucket_kind, reserved_delta, recorded_at
    FROM ledger_entries
    WHERE account_id = $1 AND occurred_at <= $2
""",
        _SUMMARY_HEAD,
        "       NULL::bigint AS balance_after,\n",
        _SUMMARY_TAIL,
    )
)

_SQL_BY_AXIS: Mapping[TimeAxis, str] = {
    "recorded": BALANCE_AS_OF_RECORDED_SQL,
    "occurred": BALANCE_AS_OF_OCCURRED_SQL,
}


class LedgerInconsistentError(RuntimeError):
    """The stored ledger breaks its own invariants (a gap in seq, or a balance_after that is not
    the sum of the deltas): a fold over it would be wrong, so none is returned."""


@dataclass(frozen=True, slots=True)
class BucketKindBalance:
    kind: str
    amount: int  # granted into buckets of this kind
    balance: int  # left in them: grants plus every later delta naming one of them


@dataclass(frozen=True, slots=True)
class AsOfBalance:
    account_id: str
    as_of: datetime
    by: TimeAxis
    seq: int  # recorded: the prefix 1..seq is reflected; occurred: the highest seq folded
    entries: int  # entries folded (recorded: equal to seq)
    balance: int
    reserved: int  # sum of reserved_delta: credits held, not yet captured or released
    granted_total: int
    consumed_total: int  # consumes minus refunds
    buckets: tuple[BucketKindBalance, ...]  # by kind, sorted by kind
    last_recorded_at: datetime  # recorded_at of the newest entry folded

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def unbucketed(self) -> int:
        """Credits outside any bucket: adjustments, unbucketed refunds, overdraft."""
        return self.balance - sum(b.balance for b in self.buckets)

    def to_json(self) -> dict[str, Any]:
        """The balance endpoint's field names, plus what pins the answer down."""
        return {
            "accountId": self.account_id,
            "asOf": iso_utc(self.as_of),
            "by": self.by,
            "balance": self.balance,
            "reserved": self.reserved,
            "available": self.available,
            "grantedTotal": self.granted_total,
            "consumedTotal": self.consumed_total,
            "buckets": [
                {"kind": b.kind, "amount": b.amount, "balance": b.balance} for b in self.buckets
            ],
            "unbucketed": self.unbucketed,
            "ledgerSeq": self.seq,
            "entries": self.entries,
            "lastUpdated": iso_utc(self.last_recorded_at),
        }


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, as the API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _require_aware(as_of: datetime) -> None:
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of must carry a UTC offset, got the naive {as_of.isoformat()}")


async def balance_as_of(
    conn_or_pool: asyncpg.Pool | DbConnection,
    account_id: str,
    as_of: datetime,
    by: TimeAxis = "recorded",
) -> AsOfBalance | None:
    """The account's balance at `as_of` (inclusive) on the `by` time axis; None when no entry of
    the account falls by then. One query, aggregated in Postgres."""
    _require_aware(as_of)
    if by not in _SQL_BY_AXIS:
        raise ValueError(f"by must be 'recorded' or 'occurred', got {by!r}")
    row = await conn_or_pool.fetchrow(_SQL_BY_AXIS[by], account_id, as_of)
    assert row is not None, "an aggregate query returns one row"
    if row["entries"] == 0:
        return None
    kind_columns = (row["kinds"] or (), row["kind_amounts"] or (), row["kind_balances"] or ())
    result = AsOfBalance(
        account_id=account_id,
        as_of=as_of,
        by=by,
        seq=row["seq"],
        entries=row["entries"],
        balance=row["balance"],
        reserved=row["reserved"],
        granted_total=row["granted_total"],
        consumed_total=row["consumed_total"],
        buckets=tuple(BucketKindBalance(*k) for k in zip(*kind_columns, strict=True)),
        last_recorded_at=row["last_recorded_at"],
    )
    if by == "recorded":
        _check_prefix(result, row["balance_after"])
    return result


def _check_prefix(result: AsOfBalance, balance_after: int) -> None:
    if result.entries != result.seq:
        raise LedgerInconsistentError(
            f"{result.account_id}: {result.entries} entries up to seq {result.seq} (a gap)"
        )
    if result.balance != balance_after:
        raise LedgerInconsistentError(
            f"{result.account_id}: deltas up to seq {result.seq} sum to {result.balance}, "
            f"its balance_after is {balance_after}"
        )


def fold_entries(
    account_id: str,
    entries: Iterable[Mapping[str, Any]],
    as_of: datetime,
    by: TimeAxis = "occurred",
) -> AsOfBalance | None:
    """The same answer as `balance_as_of`, folded in Python over one account's entries. Pure.

    Each entry needs `seq`, `delta`, `reason`, `reserved_delta` (0 when absent), `occurred_at`,
    `recorded_at`, and its bucket's kind as `bucket_kind` (table rows) or `bucket.kind` (the
    contract's shape); any order.
    """
    _require_aware(as_of)
    rows = list(entries)
    if by == "recorded":
        recorded = [e["seq"] for e in rows if e["recorded_at"] <= as_of]
        upto = max(recorded, default=0)
        chosen = [e for e in rows if e["seq"] <= upto]
    elif by == "occurred":
        chosen = [e for e in rows if e["occurred_at"] <= as_of]
    else:
        raise ValueError(f"by must be 'recorded' or 'occurred', got {by!r}")
    if not chosen:
        return None
    balance = reserved = granted = consumed = 0
    kinds: dict[str, tuple[int, int]] = {}
    for entry in chosen:
        delta, reason = int(entry["delta"]), entry["reason"]
        balance += delta
        reserved += int(entry.get("reserved_delta") or 0)
        if reason == "grant":
            granted += delta
        elif reason in ("consume", "refund"):
            consumed -= delta  # a consume's delta is negative; a refund's positive lowers it
        kind = _bucket_kind(entry)
        if kind is not None:
            amount, left = kinds.get(kind, (0, 0))
            kinds[kind] = (amount + (delta if reason == "grant" else 0), left + delta)
    return AsOfBalance(
        account_id=account_id,
        as_of=as_of,
        by=by,
        seq=max(e["seq"] for e in chosen),
        entries=len(chosen),
        balance=balance,
        reserved=reserved,
        granted_total=granted,
        consumed_total=consumed,
        buckets=tuple(BucketKindBalance(k, a, b) for k, (a, b) in sorted(kinds.items())),
        last_recorded_at=max(e["recorded_at"] for e in chosen),
    )


def _bucket_kind(entry: Mapping[str, Any]) -> str | None:
    if "bucket_kind" in entry:
        kind: str | None = entry["bucket_kind"]
        return kind
    bucket = entry.get("bucket")
    return bucket["kind"] if isinstance(bucket, Mapping) else None
