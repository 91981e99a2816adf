"""apply(view, entry) -> view for the balance read model. Pure.

Rules: `balance` is the sum of every delta, so it always equals the entry's `balance_after`;
`granted_total` sums grants; `consumed_total` is consumes minus refunds; a grant's `balance` is
its amount plus every later delta that names its bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from schemas.ledger import EntryBucket, LedgerEntryMessage


@dataclass(frozen=True, slots=True)
class GrantBalance:
    kind: str
    amount: int
    balance: int
    expires_at: datetime | None
    closed: bool = False  # expired or voided: what was left has left the account


@dataclass(frozen=True, slots=True)
class BalanceView:
    account_id: str
    last_seq: int = 0
    balance: int = 0
    reserved: int = 0
    granted_total: int = 0
    consumed_total: int = 0
    grants: Mapping[str, GrantBalance] = field(default_factory=dict)
    last_updated: datetime | None = None

    @property
    def available(self) -> int:
        return self.balance - self.reserved


def apply(view: BalanceView, entry: LedgerEntryMessage) -> BalanceView:
    """Apply one entry; an entry at or below the checkpoint changes nothing."""
    return apply_all(view, (entry,))


def apply_all(view: BalanceView, entries: Iterable[LedgerEntryMessage]) -> BalanceView:
    """`apply` over an account's entries in seq order, building the view once: a batch holds
    runs of one account's entries, and a view (and a grants map) per entry was most of its cost."""
    last_seq, balance, reserved = view.last_seq, view.balance, view.reserved
    granted_total, consumed_total = view.granted_total, view.consumed_total
    last_updated = view.last_updated
    grants: dict[str, GrantBalance] | None = None  # copied at the first entry naming a bucket
    for entry in entries:
        assert entry.account_id == view.account_id, "entry applied to another account's view"
        if entry.seq <= last_seq:
            continue
        assert entry.seq == last_seq + 1, f"gap: view at {last_seq}, entry {entry.seq}"
        balance += entry.delta
        assert balance == entry.balance_after, (
            f"balance {balance} != balance_after {entry.balance_after}"
        )
        last_seq, reserved = entry.seq, reserved + entry.reserved_delta
        if entry.reason == "grant":
            granted_total += entry.delta
        elif entry.reason in ("consume", "refund"):
            consumed_total -= entry.delta  # a refund's delta is positive: it lowers the total
        if entry.bucket is not None:
            grants = dict(view.grants) if grants is None else grants
            _apply_to_grants(grants, entry, entry.bucket)
        last_updated = entry.recorded_at
    if last_seq == view.last_seq:
        return view
    return BalanceView(
        view.account_id, last_seq, balance, reserved, granted_total, consumed_total,
        view.grants if grants is None else grants, last_updated,
    )  # fmt: skip


def _apply_to_grants(
    grants: dict[str, GrantBalance], entry: LedgerEntryMessage, bucket: EntryBucket
) -> None:
    if entry.reason == "grant":
        grants[bucket.grant_id] = GrantBalance(
            bucket.kind, entry.delta, entry.delta, bucket.expires_at
        )
    elif entry.reason in ("expiry", "void"):
        grant = grants[bucket.grant_id]
        assert grant.balance + entry.delta == 0, "a closing entry takes all that is left"
        grants[bucket.grant_id] = replace(grant, balance=0, closed=True)
    else:
        grant = grants[bucket.grant_id]
        grants[bucket.grant_id] = GrantBalance(
            grant.kind, grant.amount, grant.balance + entry.delta, grant.expires_at, grant.closed
        )


def buckets_by_kind(view: BalanceView) -> list[dict[str, int | str]]:
    """Per bucket kind: `amount` granted and `balance` left, in a stable order."""
    totals: dict[str, tuple[int, int]] = {}
    for grant in view.grants.values():
        amount, balance = totals.get(grant.kind, (0, 0))
        totals[grant.kind] = (amount + grant.amount, balance + grant.balance)
    return [
        {"kind": kind, "amount": amount, "balance": balance}
        for kind, (amount, balance) in sorted(totals.items())
    ]


def reset_at(view: BalanceView, now: datetime) -> datetime | None:
    """The earliest expiry among subscription grants still active at `now`."""
    expiries = [
        g.expires_at
        for g in view.grants.values()
        if g.kind == "subscription"
        and not g.closed
        and g.expires_at is not None
        and g.expires_at > now
    ]
    return min(expiries, default=None)
