"""Point-in-time balances: what the balance would have answered at an instant T, given what the
ledger held by T on a clock.

Two clocks choose the entries (see README.md):
- `by="recorded"` (default), ledger time: the prefix of the account's ledger, seq 1..S, where S is
  the highest seq with `recorded_at <= as_of`. A state the ledger really was in, and the answer
  for a past instant never changes.
- `by="occurred"`, event time: every entry that had happened by `as_of`, whatever its seq. What
  the account held at that instant as far as the ledger knows *now*: a late event moves it, and
  the set need not be a prefix, so it can be a balance no entry ever showed. An entry happens at
  its `occurred_at`, except a grant's: a grant counts from its `effective_at` (contract: only
  credit spendable at a moment counts then). Its opening entry, when effective at once, happens
  at the grant's `effective_at` (at or before its issue), and so does the overage payment that
  follows it; a scheduled grant's opening entry happens at its issue (from then it is
  `scheduled`), its activation (and that one's payment) at `effective_at`, its `occurred_at`.

Then, on both clocks, what event time has made due at T and the chosen entries do not yet say
happens, by the core's own rules (services/core/explain.py `ExplainFold.due`: expiry.expire_due,
what spend.due_state applies for the live balance and `/check`, and what explain applies): a
grant expired at T has left, a scheduled grant effective at T is spendable. The writer records
those entries a little later (or, on a quiet account, only at its next command); the balance
answered meanwhile already applied them, so the as-of answer does too. So `balance?as_of=T`,
`explain?as_of=T` and (T = now) the live balance agree; on ledger time the answer is entry S's
`balance_after` only when nothing was due. Holds are not rebuilt (the ledger does not carry a
hold's expiry): an expired hold counts in `reserved` until its release entry.

The chosen entries, and the due ones, fold with the balance read model's own rules
(projections/balance/apply.py: `fold_any`), so the figures (`scheduled`, `overage`,
`unbucketed`, the buckets that add up to the balance) are the read model's, as of then. The
entries stream through a cursor: memory is a page of entries, and a record per grant for the
due rules, whatever the account's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from projections.balance.apply import BalanceView, buckets_by_kind, fold_any, reset_at
from projections.grant_entries import PAYS_OVERAGE, is_activation, whole
from projections.ledger_rows import entry_from_row
from schemas.ledger import LedgerEntryMessage
from services.core.explain import ExplainFold
from services.history.core_entries import CoreEntries, to_message
from services.platform.postgres import DbConnection

TimeAxis = Literal["recorded", "occurred"]
PAGE_ROWS = 5000
EVERY_ENTRY = datetime.max.replace(tzinfo=UTC)

# Ledger time. The newest entry recorded by `as_of` is found walking the primary key
# (account_id, seq) backwards from the end, so the search costs the entries recorded after
# `as_of`; then the prefix 1..S, in seq order (one range of the primary key).
ENTRIES_AS_OF_RECORDED_SQL = """
WITH upto AS (
    SELECT seq FROM ledger_entries
    WHERE account_id = $1 AND recorded_at <= $2
    ORDER BY seq DESC LIMIT 1
)
SELECT e.* FROM ledger_entries e, upto
WHERE e.account_id = $1 AND e.seq <= upto.seq
ORDER BY e.seq
"""
# Event time: no index serves occurred_at, so this reads the account's entries (one range of the
# primary key) and keeps those that occurred by `as_of`, and every grant entry (one may count
# from an `effective_at` before its `occurred_at`; `EventTimes` decides), in seq order.
ENTRIES_AS_OF_OCCURRED_SQL = """
SELECT * FROM ledger_entries
WHERE account_id = $1 AND (occurred_at <= $2 OR reason = 'grant')
ORDER BY seq
"""

_SQL_BY_AXIS: Mapping[TimeAxis, str] = {
    "recorded": ENTRIES_AS_OF_RECORDED_SQL,
    "occurred": ENTRIES_AS_OF_OCCURRED_SQL,
}


class LedgerInconsistentError(RuntimeError):
    """The stored ledger breaks its own invariants (a gap in seq, or a balance_after that is not
    the sum of the deltas): a fold over it would be wrong, so none is returned."""


@dataclass(frozen=True, slots=True)
class BucketKindBalance:
    kind: str  # a grant kind, `unbucketed` (credit tied to no grant) or `overage` (owed)
    amount: int  # granted into open grants of this kind (unbucketed: the credit; overage: owed)
    balance: int  # left in them (overage: below zero); the kinds' balances add up to `balance`


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
    buckets: tuple[BucketKindBalance, ...]  # as the balance endpoint's: grant kinds, then the pot
    last_recorded_at: datetime  # recorded_at of the newest entry folded
    scheduled: int = 0  # credit of grants not yet effective
    overage: int = 0  # owed: what no spendable credit covered
    unbucketed: int = 0  # credit tied to no grant
    # The earliest expiry, still ahead at `as_of`, of an effective subscription grant with credit
    # left (the balance endpoint's `resetAt`).
    reset_at: datetime | None = None

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def to_json(self) -> dict[str, Any]:
        """The balance endpoint's field names, plus what pins the answer down."""
        return {
            "accountId": self.account_id,
            "asOf": iso_utc(self.as_of),
            "by": self.by,
            "balance": self.balance,
            "reserved": self.reserved,
            "available": self.available,
            "scheduled": self.scheduled,
            "overage": self.overage,
            "grantedTotal": self.granted_total,
            "consumedTotal": self.consumed_total,
            "buckets": [
                {"kind": b.kind, "amount": b.amount, "balance": b.balance} for b in self.buckets
            ],
            "unbucketed": self.unbucketed,
            "resetAt": iso_utc(self.reset_at) if self.reset_at else None,
            "ledgerSeq": self.seq,
            "entries": self.entries,
            "lastUpdated": iso_utc(self.last_recorded_at),
        }


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, as the API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cut_at(as_of: datetime | None, by: TimeAxis, now: datetime) -> datetime:
    """The instant that chooses the entries: `as_of`; without one (as of now), by ledger time
    every entry (the ledger as it stands: no clock of ours cuts off one just recorded), by event
    time what had happened by `now`."""
    if as_of is not None:
        return as_of
    return EVERY_ENTRY if by == "recorded" else now


def _require_aware(as_of: datetime) -> None:
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of must carry a UTC offset, got the naive {as_of.isoformat()}")


def _require_axis(by: str) -> None:
    if by not in _SQL_BY_AXIS:
        raise ValueError(f"by must be 'recorded' or 'occurred', got {by!r}")


class EventTimes:
    """When each entry happened on the event-time axis; fed an account's entries in seq order
    (a grant's opening or activation entry comes before the overage payment that follows it)."""

    def __init__(self) -> None:
        self._grant_time: dict[str, datetime] = {}  # the grant's last entry naming its bucket

    def of(self, entry: LedgerEntryMessage) -> datetime:
        if entry.reason != "grant":
            return entry.occurred_at
        bucket = entry.bucket
        if bucket is None:  # an overage payment: when its grant's credit counted
            grant_id = entry.metadata.get("grant_id")
            if whole(entry.metadata, PAYS_OVERAGE) is not None and isinstance(grant_id, str):
                return self._grant_time.get(grant_id, entry.occurred_at)
            return entry.occurred_at
        when = entry.occurred_at
        if not is_activation(entry.metadata) and bucket.effective_at is not None:
            when = min(when, bucket.effective_at)  # scheduled: effective_at is later: its issue
        self._grant_time[bucket.grant_id] = when
        return when


class Selection:
    """Which entries count at `as_of` on the `by` axis, fed an account's entries in seq order:
    ledger time takes what it is given (the query or `fold_entries` cut the prefix), event time
    the entries that had happened by then (`EventTimes`). Also checks a ledger-time prefix."""

    def __init__(self, account_id: str, as_of: datetime, by: TimeAxis) -> None:
        self.account_id, self.as_of, self.by = account_id, as_of, by
        self.times = EventTimes()
        self.entries = 0
        self.last_seq = 0
        self.deltas = 0
        self.last_balance_after: int | None = None

    def counts(self, entry: LedgerEntryMessage) -> bool:
        if self.by == "occurred" and self.times.of(entry) > self.as_of:
            return False
        self.entries += 1
        self.last_seq = max(self.last_seq, entry.seq)
        self.deltas += entry.delta
        self.last_balance_after = entry.balance_after
        return True

    def check_prefix(self) -> None:
        """Ledger time: refuse a prefix with a gap or whose deltas do not sum to its last
        `balance_after` (`LedgerInconsistentError`)."""
        if self.by != "recorded" or self.entries == 0:
            return
        if self.entries != self.last_seq:
            raise LedgerInconsistentError(
                f"{self.account_id}: {self.entries} entries up to seq {self.last_seq} (a gap)"
            )
        if self.deltas != self.last_balance_after:
            raise LedgerInconsistentError(
                f"{self.account_id}: deltas up to seq {self.last_seq} sum to {self.deltas}, "
                f"its balance_after is {self.last_balance_after}"
            )


async def entries_as_of(
    conn: DbConnection, account_id: str, as_of: datetime, by: TimeAxis = "recorded"
) -> AsyncIterator[LedgerEntryMessage]:
    """The account's entries that count at `as_of` on the `by` axis, in seq order, streamed
    through a cursor in one read-only transaction (a savepoint inside the caller's). Ledger time
    raises `LedgerInconsistentError` at the end of a broken prefix. `balance_as_of` folds these;
    the explain read (services/api/reads/explain.py) explains them."""
    _require_aware(as_of)
    _require_axis(by)
    selection = Selection(account_id, as_of, by)
    async with conn.transaction(readonly=True):  # a cursor lives in a transaction
        async for row in conn.cursor(_SQL_BY_AXIS[by], account_id, as_of, prefetch=PAGE_ROWS):
            entry = entry_from_row(row)
            if selection.counts(entry):
                yield entry
    selection.check_prefix()


def select_entries(
    account_id: str, entries: Iterable[LedgerEntryMessage], as_of: datetime, by: TimeAxis
) -> list[LedgerEntryMessage]:
    """The same choice over one account's entries in memory (any order; no prefix checks)."""
    _require_aware(as_of)
    _require_axis(by)
    messages = sorted(entries, key=lambda e: e.seq)
    if by == "recorded":
        upto = max((e.seq for e in messages if e.recorded_at <= as_of), default=0)
        messages = [e for e in messages if e.seq <= upto]
    selection = Selection(account_id, as_of, by)
    return [e for e in messages if selection.counts(e)]


class _Fold:
    """The chosen entries, in seq order, folded a page at a time into the balance view; at the
    end, what is due at `at` (the instant answered) folds in too."""

    def __init__(self, account_id: str, at: datetime, by: TimeAxis) -> None:
        self.account_id, self.at, self.by = account_id, at, by
        self.view = BalanceView(account_id)
        self.entries = 0
        self.last_recorded_at: datetime | None = None
        self._page: list[LedgerEntryMessage] = []
        # The core's account state, for its due rules; no consume is kept for explaining.
        self._core, self._state = CoreEntries(), ExplainFold(account_id, recent=0)

    def add(self, entry: LedgerEntryMessage) -> None:
        self._page.append(entry)
        self._state.add(self._core.of(entry))
        self.entries += 1
        if self.last_recorded_at is None or entry.recorded_at > self.last_recorded_at:
            self.last_recorded_at = entry.recorded_at
        if len(self._page) >= PAGE_ROWS:
            self._flush()

    def _flush(self) -> None:
        self.view = fold_any(self.view, self._page)
        self._page = []

    def result(self) -> AsOfBalance | None:
        self._flush()
        if self.entries == 0 or self.last_recorded_at is None:
            return None
        ledger_seq = self.view.last_seq
        _, due = self._state.due(self.at)
        view = fold_any(self.view, [to_message(entry) for entry in due])
        buckets = tuple(
            BucketKindBalance(str(b["kind"]), int(b["amount"]), int(b["balance"]))
            for b in buckets_by_kind(view)
        )
        assert sum(b.balance for b in buckets) == view.balance, "buckets add up to the balance"
        return AsOfBalance(
            account_id=self.account_id, as_of=self.at, by=self.by, seq=ledger_seq,
            entries=self.entries, balance=view.balance, reserved=view.reserved,
            granted_total=view.granted_total, consumed_total=view.consumed_total,
            buckets=buckets, last_recorded_at=self.last_recorded_at, scheduled=view.scheduled,
            overage=view.overage, unbucketed=view.unbucketed, reset_at=reset_at(view, self.at),
        )  # fmt: skip


async def balance_as_of(
    conn_or_pool: asyncpg.Pool | DbConnection,
    account_id: str,
    as_of: datetime,
    by: TimeAxis = "recorded",
) -> AsOfBalance | None:
    """What the balance would have answered at `as_of` (inclusive), given the entries the ledger
    held by then on the `by` clock, with what was due at `as_of` applied; None when no entry of
    the account falls by then. Ledger time refuses a prefix with a gap or whose deltas do not
    sum to its last `balance_after` (`LedgerInconsistentError`)."""
    _require_aware(as_of)
    _require_axis(by)
    return await _on_connection(conn_or_pool, account_id, as_of, as_of, by)


async def balance_now(
    conn_or_pool: asyncpg.Pool | DbConnection, account_id: str, by: TimeAxis, now: datetime
) -> AsOfBalance | None:
    """`balance_as_of` without an `as_of`: the balance now, from the entries `cut_at` chooses
    (by ledger time every one), with what is due at `now` applied: the live balance's answer."""
    _require_aware(now)
    _require_axis(by)
    return await _on_connection(conn_or_pool, account_id, cut_at(None, by, now), now, by)


async def _on_connection(
    conn_or_pool: asyncpg.Pool | DbConnection,
    account_id: str,
    cut: datetime,
    at: datetime,
    by: TimeAxis,
) -> AsOfBalance | None:
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await _balance_as_of(conn, account_id, cut, at, by)
    return await _balance_as_of(conn_or_pool, account_id, cut, at, by)


async def _balance_as_of(
    conn: DbConnection, account_id: str, cut: datetime, at: datetime, by: TimeAxis
) -> AsOfBalance | None:
    fold = _Fold(account_id, at, by)
    async for entry in entries_as_of(conn, account_id, cut, by):
        fold.add(entry)
    return fold.result()


def fold_entries(
    account_id: str,
    entries: Iterable[Mapping[str, Any]],
    as_of: datetime,
    by: TimeAxis = "occurred",
    cut: datetime | None = None,
) -> AsOfBalance | None:
    """The same answer as `balance_as_of`, over one account's entries in memory. Pure. `cut`,
    when given, chooses the entries instead of `as_of` (`balance_now`'s `EVERY_ENTRY`).

    Entries are `ledger_entries` rows (`entry_id`, `bucket_grant_id`, `bucket_kind`,
    `bucket_expires_at`, `bucket_terms`) or the contract's shape (`id`, `bucket` {`grant_id`,
    `kind`, ...}), in any order; each needs `seq`, `delta`, `reason`, `occurred_at`,
    `recorded_at`, and its bucket's grant id and kind when it names one; `reserved_delta`,
    `metadata`, `source` and `balance_after` default to nothing. No ledger checks.
    """
    fold = _Fold(account_id, as_of, by)
    chosen = as_of if cut is None else cut
    for message in select_entries(account_id, _messages(account_id, entries), chosen, by):
        fold.add(message)
    return fold.result()


def _messages(account_id: str, rows: Iterable[Mapping[str, Any]]) -> Iterator[LedgerEntryMessage]:
    for row in rows:
        if "bucket" in row:  # the contract's shape
            fields = dict(row)
        else:  # a ledger_entries row
            fields = {k: v for k, v in row.items() if not k.startswith("bucket_")}
            fields["id"] = str(row.get("entry_id", ""))
            fields["bucket"] = None
            if row.get("bucket_kind") is not None:
                terms = row.get("bucket_terms") or {}
                fields["bucket"] = {
                    "grant_id": row["bucket_grant_id"], "kind": row["bucket_kind"],
                    "expires_at": row.get("bucket_expires_at"),
                    "effective_at": terms.get("effective_at"), "priority": terms.get("priority"),
                    "applies_to": terms.get("applies_to"),
                }  # fmt: skip
        defaults = {"id": "", "source": "", "balance_after": 0, "metadata": {}, "reserved_delta": 0}
        given = {k: v for k, v in fields.items() if v is not None or k == "bucket"}
        yield LedgerEntryMessage.model_validate({**defaults, **given, "account_id": account_id})
