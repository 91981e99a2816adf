"""Why the balance is what it is: an account's ledger entries read back per grant. Pure.

`explain(account_id, entries, at)` folds the entries (the ledger as it stood at `at`: a prefix
by ledger time, or the event-time set services/history/as_of.py selects, in seq order) into,
per grant: `granted` (credit that became spendable in it: the grant's amount less what it paid
of what was owed), `consumed`, `refunded`, `expired`, `voided`, `adjusted` (taken by negative
adjustments) and `remaining`, with

    granted - consumed + refunded - expired - voided - adjusted == remaining

for every grant (a closing entry takes what the grant has left), and

    sum(remaining) + unbucketed - overage == balance.

Then what event time has made due by `at` happens, by the core's own rules (expiry.expire_due on
the state the entries describe, as spend.due_state does for `/check` and the balance), and each
spendable grant gets its place in the drawdown order (drawdown.draw_order, the order plan_draws
draws in: lowest priority, then soonest expiry, then oldest grant) and a sentence saying why.
What is owed is explained by the calls that left it owed; the last `recent` consumes show the
buckets each drew.

The fold takes any subset of an account's entries (event time need not give a prefix): an entry
naming a grant the subset never opened opens it as it comes, so a read never fails on a ledger it
did not pick. Holds are not explained (the ledger does not carry a hold's expiry).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time

from services.core.drawdown import draw_order
from services.core.expiry import expire_due
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    Bucket,
    BucketKind,
    EntryReason,
    LedgerEntry,
    MetadataValue,
)
from services.core.tape import Tape
from services.core.value import value_type

RECENT_CONSUMES = 20

# A grant's state at the instant explained.
SPENDABLE, SCHEDULED, NOT_YET_EFFECTIVE, SPENT, EXPIRED, VOIDED = (
    "spendable", "scheduled", "not_yet_effective", "spent", "expired", "voided",
)  # fmt: skip


@value_type
class GrantExplained:
    grant_id: str
    kind: BucketKind
    name: str | None
    amount: int  # the grant's whole amount
    granted: int  # credit that became spendable in it
    paid_overage: int  # of `amount`, what paid off what was owed when it became spendable
    scheduled: int  # of `amount`, not yet effective
    consumed: int
    refunded: int
    expired: int
    voided: int
    adjusted: int  # taken by negative adjustments
    remaining: int
    status: str  # SPENDABLE, SCHEDULED, NOT_YET_EFFECTIVE, SPENT, EXPIRED or VOIDED
    draw_order: int | None  # 1 = drawn first; None: not spendable at the instant
    why: str
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    applies_to: tuple[str, ...] | None
    granted_at: datetime  # its opening entry's occurred_at
    granted_seq: int  # its opening entry's seq: "oldest grant" means lowest


@value_type
class DrawExplained:
    grant_id: str | None  # None: credit tied to no grant
    amount: int


@value_type
class ConsumeExplained:
    request_id: str
    credits: int  # the call's whole price: its draws plus what it left owed
    draws: tuple[DrawExplained, ...]
    owed: int
    refunded: int
    endpoint: str | None
    occurred_at: datetime
    seq: int  # its first consume entry


@value_type
class Explanation:
    account_id: str
    at: datetime
    seq: int  # the highest ledger seq explained
    balance: int
    overage: int
    unbucketed: int
    scheduled: int
    grants: tuple[GrantExplained, ...]  # in the order they were granted
    recent_consumes: tuple[ConsumeExplained, ...]  # newest first
    overage_why: str
    due_entries: int  # entries the due rules added at `at` (the ledger had not written them)


@dataclass(slots=True)
class _Grant:
    terms: Bucket
    name: str | None
    granted_at: datetime
    amount: int
    granted: int = 0
    paid_overage: int = 0
    pending: int = 0
    consumed: int = 0
    refunded: int = 0
    expired: int = 0
    voided: int = 0
    adjusted: int = 0
    closed: str | None = None  # EXPIRED or VOIDED

    @property
    def remaining(self) -> int:
        return (
            self.granted - self.consumed + self.refunded - self.expired - self.voided
            - self.adjusted
        )  # fmt: skip


@dataclass(slots=True)
class _Consume:
    request_id: str
    seq: int
    occurred_at: datetime
    endpoint: str | None
    draws: list[DrawExplained] = field(default_factory=list)
    owed: int = 0
    refunded: int = 0


@dataclass(slots=True)
class _Owed:
    request_id: str | None  # None: a negative adjustment
    credits: int
    at: datetime


def _whole(metadata: Mapping[str, MetadataValue], key: str) -> int | None:
    value = metadata.get(key)
    return value if type(value) is int else None


class ExplainFold:
    """The fold behind `explain`, fed one entry at a time (a read streams a long ledger)."""

    def __init__(self, account_id: str, recent: int = RECENT_CONSUMES) -> None:
        self.account_id, self.recent = account_id, recent
        self.seq = self.balance = self._open_total = 0
        self._grants: list[_Grant] = []
        self._open: dict[str, _Grant] = {}
        self._consumes: OrderedDict[str, _Consume] = OrderedDict()
        # What was left owed since the pot last stood at or above zero, less refunds of it.
        self._owed: list[_Owed] = []

    def add(self, entry: LedgerEntry) -> None:
        assert entry.account_id == self.account_id, "entry of another account"
        self.seq, self.balance = max(self.seq, entry.seq), self.balance + entry.delta
        if entry.reason is EntryReason.GRANT:
            self._open_total += self._grant_entry(entry)
        elif entry.bucket_grant_id is not None:
            self._open_total += self._bucket_entry(entry)
        self._track_consume(entry)
        self._track_owed(entry)

    def _track_owed(self, entry: LedgerEntry) -> None:
        """The calls behind what is owed: each owed part, less what refunds gave back."""
        if entry.bucket_grant_id is None and entry.delta < 0:
            if _whole(entry.metadata, "owed") is not None:
                self._owed.append(_Owed(entry.request_id, -entry.delta, entry.occurred_at))
        elif entry.reason is EntryReason.REFUND and entry.bucket_grant_id is None:
            back = entry.delta
            for owed in reversed(self._owed):
                if owed.request_id == entry.request_id and back > 0:
                    take = min(back, owed.credits)
                    owed.credits, back = owed.credits - take, back - take
            self._owed = [owed for owed in self._owed if owed.credits > 0]
        if self.balance - self._open_total >= 0:
            self._owed.clear()

    def _grant_entry(self, entry: LedgerEntry) -> int:
        """Open a grant, or make a scheduled one spendable; returns what open grants gained."""
        grant_id = entry.bucket_grant_id
        if grant_id is None:  # an overage payment: the pot's credit, paid by its grant
            paying = entry.metadata.get("grant_id")
            paid = _whole(entry.metadata, "pays_overage")
            if paid is not None and isinstance(paying, str) and paying in self._open:
                self._open[paying].paid_overage += entry.delta
            return 0
        grant = self._open.get(grant_id)
        if grant is not None:  # its activation: the only grant entry naming an open grant
            grant.pending = 0
            if entry.grant is not None:
                grant.terms = replace(entry.grant, granted_seq=grant.terms.granted_seq)
        else:
            grant = self._opened(entry)
        grant.granted += entry.delta
        return entry.delta

    def _bucket_entry(self, entry: LedgerEntry) -> int:
        """A consume, refund, adjustment, expiry or void of a grant; returns what open grants
        gained (a closing entry takes all the grant has left)."""
        assert entry.bucket_grant_id is not None
        grant = self._open.get(entry.bucket_grant_id) or self._opened(entry)
        before, reason, delta = grant.remaining, entry.reason, entry.delta
        if reason is EntryReason.CONSUME:
            grant.consumed -= delta
        elif reason is EntryReason.REFUND:
            grant.refunded += delta
        elif reason in (EntryReason.EXPIRY, EntryReason.VOID):
            # On the ledger the closing delta is exactly what is left; in an event-time subset
            # it need not be, and the grant still ends at 0 (as the balance read model has it).
            if reason is EntryReason.EXPIRY:
                grant.expired, grant.closed = grant.expired + before, EXPIRED
            else:
                grant.voided, grant.closed = grant.voided + before, VOIDED
            grant.pending = 0  # a scheduled grant voided: its credit never arrives
            del self._open[entry.bucket_grant_id]
        else:  # a negative adjustment's draw (and anything else naming a grant)
            grant.adjusted -= delta
        return grant.remaining - before

    def _opened(self, entry: LedgerEntry) -> _Grant:
        """A grant opened by `entry`: its opening entry, or (an event-time subset) any entry of
        a grant the subset never opened."""
        assert entry.bucket_grant_id is not None
        kind = entry.bucket_kind or BucketKind.PURCHASED
        terms = entry.grant or Bucket(
            grant_id=entry.bucket_grant_id, kind=kind, priority=DEFAULT_PRIORITY[kind],
            effective_at=entry.occurred_at, expires_at=None, granted_seq=entry.seq,
            remaining=0,
        )  # fmt: skip
        opening = entry.reason is EntryReason.GRANT
        name = entry.metadata.get("name") if opening else None
        amount = _whole(entry.metadata, "granted") if opening else 0
        grant = _Grant(
            terms=replace(terms, granted_seq=terms.granted_seq or entry.seq),
            name=name if isinstance(name, str) else None,
            granted_at=entry.occurred_at,
            amount=entry.delta if amount is None else amount,  # older entries: the delta
            pending=(_whole(entry.metadata, "scheduled") or 0) if opening else 0,
        )
        self._grants.append(grant)
        self._open[entry.bucket_grant_id] = grant
        return grant

    def _track_consume(self, entry: LedgerEntry) -> None:
        request_id = entry.request_id
        if request_id is None:
            return
        if entry.reason is EntryReason.REFUND:
            if request_id in self._consumes:
                self._consumes[request_id].refunded += entry.delta
            return
        if entry.reason is not EntryReason.CONSUME:
            return
        consume = self._consumes.get(request_id)
        if consume is None:
            endpoint = entry.metadata.get("endpoint")
            consume = _Consume(
                request_id, entry.seq, entry.occurred_at,
                endpoint if isinstance(endpoint, str) else None,
            )  # fmt: skip
            self._consumes[request_id] = consume
            if len(self._consumes) > self.recent:
                self._consumes.popitem(last=False)
        if entry.bucket_grant_id is None and _whole(entry.metadata, "owed") is not None:
            consume.owed -= entry.delta
        else:
            consume.draws.append(DrawExplained(entry.bucket_grant_id, -entry.delta))

    def state(self) -> AccountState:
        """The account as these entries describe it (buckets and balance; no holds)."""
        buckets = tuple(
            replace(g.terms, remaining=g.remaining, granted=g.amount, pending=g.pending)
            for g in self._grants
            if g.closed is None
        )
        return AccountState(self.account_id, seq=self.seq, balance=self.balance, buckets=buckets)

    def due(self, at: datetime) -> tuple[AccountState, list[LedgerEntry]]:
        """What event time has made due at `at`, by the core's rules (expiry.expire_due, as
        spend.due_state applies them for `/check` and the balance): the state after, and the
        entries the writer would write for it. The fold is unchanged; the point-in-time balance
        (services/history/as_of.py) folds these entries too, so it and explain agree."""
        tape = Tape(self.state(), at)
        expire_due(tape, at)
        return tape.state, [e for e in tape.events if isinstance(e, LedgerEntry)]

    def finish(self, at: datetime) -> Explanation:
        """Apply what is due at `at`, then explain. Call once: the due entries join the fold."""
        ledger_seq = self.seq
        now, due = self.due(at)
        for entry in due:
            self.add(entry)
        by_id = {b.grant_id: b for b in now.buckets}
        for grant in self._grants:  # an empty bucket past its expiry may have been dropped
            bucket = by_id.get(grant.terms.grant_id) if grant.closed is None else None
            left = bucket.remaining if bucket is not None else 0
            assert left == grant.remaining, f"{grant.terms.grant_id}: fold and core disagree"
        order = {b.grant_id: n for n, b in enumerate(draw_order(now.buckets, None, at), 1)}
        grants = tuple(_explained(g, order, at) for g in self._grants)
        pot = now.balance - sum(g.remaining for g in grants)
        assert pot == now.pot, "the pot is the balance outside every grant"
        assert sum(g.remaining for g in grants) + now.unbucketed - now.overage == now.balance
        return Explanation(
            account_id=self.account_id, at=at, seq=ledger_seq, balance=now.balance,
            overage=now.overage, unbucketed=now.unbucketed, scheduled=now.scheduled,
            grants=grants, recent_consumes=self._recent(), overage_why=self._overage_why(now),
            due_entries=len(due),
        )  # fmt: skip

    def _recent(self) -> tuple[ConsumeExplained, ...]:
        return tuple(_consume(c) for c in reversed(self._consumes.values()))

    def _overage_why(self, now: AccountState) -> str:
        if now.overage == 0:
            return "nothing is owed"
        calls = sum(1 for owed in self._owed if owed.request_id is not None)
        adjustments = len(self._owed) - calls
        parts = [_count(calls, "call"), _count(adjustments, "negative adjustment")]
        what = " and ".join(part for part in parts if part) or "charges"
        latest = ""
        if self._owed:
            last = self._owed[-1]
            request, credits, when = last.request_id, last.credits, last.at
            named = f"request {request}" if request else "an adjustment"
            latest = f" (the latest: {named}, {credits} owed, at {_when(when)})"
        return (
            f"{now.overage} credits owed: what no spendable credit covered of {what} since the "
            f"balance last stood at zero or above{latest}; the next grant that becomes "
            "spendable pays it off first"
        )


def explain(
    account_id: str,
    entries: Iterable[LedgerEntry],
    at: datetime,
    recent: int = RECENT_CONSUMES,
) -> Explanation:
    fold = ExplainFold(account_id, recent)
    for entry in entries:
        fold.add(entry)
    return fold.finish(at)


def _consume(c: _Consume) -> ConsumeExplained:
    return ConsumeExplained(
        request_id=c.request_id, credits=sum(d.amount for d in c.draws) + c.owed,
        draws=tuple(c.draws), owed=c.owed, refunded=c.refunded, endpoint=c.endpoint,
        occurred_at=c.occurred_at, seq=c.seq,
    )  # fmt: skip


def _explained(grant: _Grant, order: dict[str, int], at: datetime) -> GrantExplained:
    terms = grant.terms
    status, why = _status(grant, order, at)
    if grant.paid_overage:
        why += f"; paid {grant.paid_overage} owed credits when it became spendable"
    return GrantExplained(
        grant_id=terms.grant_id, kind=terms.kind, name=grant.name, amount=grant.amount,
        granted=grant.granted, paid_overage=grant.paid_overage, scheduled=grant.pending,
        consumed=grant.consumed, refunded=grant.refunded, expired=grant.expired,
        voided=grant.voided, adjusted=grant.adjusted, remaining=grant.remaining, status=status,
        draw_order=order.get(terms.grant_id), why=why, priority=terms.priority,
        effective_at=terms.effective_at, expires_at=terms.expires_at,
        applies_to=terms.applies_to, granted_at=grant.granted_at,
        granted_seq=terms.granted_seq,
    )  # fmt: skip


def _status(grant: _Grant, order: dict[str, int], at: datetime) -> tuple[str, str]:
    terms = grant.terms
    if grant.closed == VOIDED:
        return VOIDED, f"voided: {grant.voided} credits left with it"
    if grant.closed == EXPIRED or (grant.pending == 0 and terms.expired_at(at)):
        assert terms.expires_at is not None or grant.closed == EXPIRED
        when = _when(terms.expires_at) if terms.expires_at else "early"
        return EXPIRED, f"expired {when}: {grant.expired} credits left with it"
    if grant.pending > 0:
        spendable_from = _when(terms.effective_at)
        return SCHEDULED, f"scheduled: {grant.pending} credits spendable from {spendable_from}"
    if at < terms.effective_at:
        return NOT_YET_EFFECTIVE, f"not effective until {_when(terms.effective_at)}"
    if terms.grant_id not in order:
        return SPENT, "spent: nothing left to draw"
    expiry = f"expires {_when(terms.expires_at)}" if terms.expires_at else "never expires"
    why = f"priority {terms.priority}, then {expiry}, then granted {_when(grant.granted_at)}"
    why += f" (ledger seq {terms.granted_seq})"
    if terms.applies_to is not None:
        why += f"; only for {', '.join(terms.applies_to) or 'no endpoint'}"
    return SPENDABLE, why


def _count(n: int, what: str) -> str:
    return "" if n == 0 else f"{n} {what}{'s' if n > 1 else ''}"


def _when(moment: datetime) -> str:
    """A UTC date when the instant is midnight, else the instant (ISO-8601, `Z`)."""
    utc = moment.astimezone(UTC)
    if utc.timetz() == time(tzinfo=UTC):
        return utc.date().isoformat()
    return utc.isoformat().replace("+00:00", "Z")
