"""apply(view, entry) -> view for the balance read model. Pure.

Rules: `balance` is the sum of every delta, so it always equals the entry's `balance_after`;
`granted_total` sums grant entries' deltas (overage payments and activations included: the credit
that became spendable); `consumed_total` is consumes minus refunds. Per grant: `amount` is what
was granted (`metadata.granted`, else the opening delta), `balance` the sum of the deltas of the
entries naming it; a grant opened `scheduled` holds that credit as `scheduled`, not spendable and
not in `balance`, until its activation entry. The pot, what the balance holds outside every open
grant, is credit tied to no grant when above zero (`unbucketed`) and what is owed when below
(`overage`); the kinds of `buckets_by_kind` (grant kinds, then `unbucketed` or `overage`) add up
to `balance`. See projections/grant_entries.py for the entries' shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from projections.grant_entries import granted_amount, is_activation, scheduled_amount
from schemas.ledger import EntryBucket, LedgerEntryMessage
from services.core.errors import LedgerGap


@dataclass(frozen=True, slots=True)
class GrantBalance:
    kind: str
    amount: int
    balance: int
    expires_at: datetime | None
    closed: bool = False  # expired or voided: what was left has left the account
    # Credit of the grant not yet effective (opened scheduled, not activated): not spendable,
    # not in `balance`. A grant closed before its activation keeps it: it never was spendable.
    scheduled: int = 0

    @property
    def spendable(self) -> bool:
        """Effective (activated or never scheduled), whether or not credit is left."""
        return self.scheduled == 0


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

    @property
    def scheduled(self) -> int:
        """Credit of open grants not yet effective."""
        return sum(g.scheduled for g in self.grants.values() if not g.closed)

    @property
    def pot(self) -> int:
        """The balance outside every open grant, signed (contract: "Money is exact")."""
        return self.balance - sum(g.balance for g in self.grants.values() if not g.closed)

    @property
    def unbucketed(self) -> int:
        """Credit tied to no grant (adjustments, refunds of closed grants)."""
        return max(self.pot, 0)

    @property
    def overage(self) -> int:
        """What no spendable credit covered: owed until a grant becomes spendable."""
        return max(-self.pot, 0)


def apply(view: BalanceView, entry: LedgerEntryMessage) -> BalanceView:
    """Apply one entry; an entry at or below the checkpoint changes nothing."""
    return apply_all(view, (entry,))


def apply_all(view: BalanceView, entries: Iterable[LedgerEntryMessage]) -> BalanceView:
    """`apply` over an account's entries in seq order, building the view once: a batch holds
    runs of one account's entries, and a view (and a grants map) per entry was most of its cost."""
    return _fold(view, entries, checked=True)


def fold_any(view: BalanceView, entries: Iterable[LedgerEntryMessage]) -> BalanceView:
    """The same rules over any subset of an account's entries, in the order given (seq order
    keeps a grant's opening entry first): no checkpoint, gap or `balance_after` checks, and an
    entry naming a grant the subset does not open is taken as it comes. For point-in-time
    answers on event time (services/history/as_of.py), where the set need not be a prefix."""
    return _fold(view, entries, checked=False)


def _fold(
    view: BalanceView, entries: Iterable[LedgerEntryMessage], *, checked: bool
) -> BalanceView:
    last_seq, balance, reserved = view.last_seq, view.balance, view.reserved
    granted_total, consumed_total = view.granted_total, view.consumed_total
    last_updated, folded = view.last_updated, False
    grants: dict[str, GrantBalance] | None = None  # copied at the first entry naming a bucket
    for entry in entries:
        assert entry.account_id == view.account_id, "entry applied to another account's view"
        if checked:
            if entry.seq <= last_seq:
                continue
            if entry.seq != last_seq + 1:
                raise LedgerGap(f"{view.account_id}: gap: view at {last_seq}, entry {entry.seq}")
            if balance + entry.delta != entry.balance_after:
                raise LedgerGap(
                    f"{view.account_id}/{entry.seq}: balance {balance + entry.delta} != "
                    f"balance_after {entry.balance_after}"
                )
        balance, reserved = balance + entry.delta, reserved + entry.reserved_delta
        last_seq, folded = max(last_seq, entry.seq), True
        if entry.reason == "grant":
            granted_total += entry.delta
        elif entry.reason in ("consume", "refund"):
            consumed_total -= entry.delta  # a refund's delta is positive: it lowers the total
        if entry.bucket is not None:
            grants = dict(view.grants) if grants is None else grants
            _apply_to_grants(grants, entry, entry.bucket, checked)
        last_updated = entry.recorded_at
    if not folded:
        return view
    return BalanceView(
        view.account_id, last_seq, balance, reserved, granted_total, consumed_total,
        view.grants if grants is None else grants, last_updated,
    )  # fmt: skip


def _apply_to_grants(
    grants: dict[str, GrantBalance], entry: LedgerEntryMessage, bucket: EntryBucket, checked: bool
) -> None:
    grant = grants.get(bucket.grant_id)
    if entry.reason == "grant" and not is_activation(entry.metadata):  # opens the grant
        scheduled = scheduled_amount(entry.metadata)
        amount = granted_amount(entry.metadata, entry.delta)
        grants[bucket.grant_id] = GrantBalance(
            bucket.kind, amount, entry.delta, bucket.expires_at, scheduled=scheduled
        )
        return
    if grant is None:  # checked: never; an event-time subset may lack the opening entry
        assert not checked, f"entry {entry.seq} names grant {bucket.grant_id}, never opened"
        grant = GrantBalance(bucket.kind, 0, 0, bucket.expires_at)
    if entry.reason == "grant":  # the activation: the grant's credit becomes spendable
        assert not checked or (grant.scheduled > 0 and not grant.closed), (
            f"activation of grant {bucket.grant_id}, which is not scheduled"
        )
        grants[bucket.grant_id] = GrantBalance(
            grant.kind, grant.amount, grant.balance + entry.delta, grant.expires_at, grant.closed
        )
    elif entry.reason in ("expiry", "void"):
        assert not checked or grant.balance + entry.delta == 0, (
            "a closing entry takes all that is left"
        )
        grants[bucket.grant_id] = replace(grant, balance=0, closed=True)
    else:
        grants[bucket.grant_id] = GrantBalance(
            grant.kind, grant.amount, grant.balance + entry.delta, grant.expires_at, grant.closed,
            grant.scheduled,
        )  # fmt: skip


def buckets_by_kind(view: BalanceView) -> list[dict[str, int | str]]:
    """The balance's `buckets`, whose balances add up to `balance`, as services/core/spend.py's
    `figures` gives them: per grant kind, `amount` granted and `balance` left over the open
    grants that are spendable (a scheduled grant is the `scheduled` figure instead; an expired or
    voided one has left), in kind order; then the pot: `unbucketed` (amount and balance: the
    credit) when above zero, `overage` (amount: what is owed; balance: below zero) when below."""
    totals: dict[str, tuple[int, int]] = {}
    for grant in view.grants.values():
        if grant.closed or not grant.spendable:
            continue
        amount, balance = totals.get(grant.kind, (0, 0))
        totals[grant.kind] = (amount + grant.amount, balance + grant.balance)
    rows: list[dict[str, int | str]] = [
        {"kind": kind, "amount": amount, "balance": balance}
        for kind, (amount, balance) in sorted(totals.items())
    ]
    pot = view.pot
    if pot > 0:
        rows.append({"kind": "unbucketed", "amount": pot, "balance": pot})
    elif pot < 0:
        rows.append({"kind": "overage", "amount": -pot, "balance": pot})
    return rows


def reset_at(view: BalanceView, now: datetime) -> datetime | None:
    """The earliest expiry, still ahead at `now`, of an effective open subscription grant with
    credit left."""
    expiries = [
        g.expires_at
        for g in view.grants.values()
        if g.kind == "subscription"
        and not g.closed
        and g.spendable
        and g.balance > 0
        and g.expires_at is not None
        and g.expires_at > now
    ]
    return min(expiries, default=None)
