"""apply(view, entry) -> view for the balance read model. Pure.

Rules: `balance` is the sum of every delta, so it always equals the entry's `balance_after`;
`granted_total` sums grants; `consumed_total` is consumes minus refunds; a grant's `balance` is
its amount plus every later delta that names its bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from schemas.ledger import LedgerEntryMessage


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
    assert entry.account_id == view.account_id, "entry applied to another account's view"
    if entry.seq <= view.last_seq:
        return view
    assert entry.seq == view.last_seq + 1, f"gap: view at {view.last_seq}, entry {entry.seq}"
    balance = view.balance + entry.delta
    assert balance == entry.balance_after, (
        f"balance {balance} != balance_after {entry.balance_after}"
    )
    return replace(
        view,
        last_seq=entry.seq,
        balance=balance,
        reserved=view.reserved + entry.reserved_delta,
        granted_total=view.granted_total + (entry.delta if entry.reason == "grant" else 0),
        consumed_total=view.consumed_total + _consumed(entry),
        grants=_apply_to_grants(view.grants, entry),
        last_updated=entry.recorded_at,
    )


def _consumed(entry: LedgerEntryMessage) -> int:
    if entry.reason == "consume":
        return -entry.delta
    if entry.reason == "refund":
        return -entry.delta  # a refund's delta is positive: it lowers what was consumed
    return 0


def _apply_to_grants(
    grants: Mapping[str, GrantBalance], entry: LedgerEntryMessage
) -> Mapping[str, GrantBalance]:
    bucket = entry.bucket
    if bucket is None:
        return grants
    updated = dict(grants)
    if entry.reason == "grant":
        updated[bucket.grant_id] = GrantBalance(
            bucket.kind, entry.delta, entry.delta, bucket.expires_at
        )
    elif entry.reason in ("expiry", "void"):
        grant = updated[bucket.grant_id]
        assert grant.balance + entry.delta == 0, "a closing entry takes all that is left"
        updated[bucket.grant_id] = replace(grant, balance=0, closed=True)
    else:
        grant = updated[bucket.grant_id]
        updated[bucket.grant_id] = replace(grant, balance=grant.balance + entry.delta)
    return updated


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
