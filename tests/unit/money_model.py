"""An independent model of one account's money, written from the contract's rules
(docs/contract.md v1.1, "Money is exact"; services/core/README.md), not from the core.

It imports only the core's command dataclasses (plain data) and never calls services/core.

What it tracks:
- per grant: amount, spendable-from (`effective_at`), expiry, priority, `applies_to`, what is
  left (`remaining`), whether it is still scheduled (not yet effective) or closed (expired or
  voided);
- the pot: the balance outside every grant, signed (negative: what is owed);
- open holds (they reserve credit: available = balance - reserved);
- the credit limit;
- each charged request's draws, for refunds (last draw first, back where they came from).

Rules:
- Before every command, what event time has made due happens, in time order: a scheduled grant
  becomes spendable at its `effective_at` (credit arrives before anything expires at the same
  instant; grants at the same instant oldest first), a grant's remainder leaves at its
  `expires_at`, a hold is released at its `expires_at`.
- A grant that becomes spendable pays what is owed first (`paid = min(amount, owed)`: the pot
  goes back up by `paid`, the grant keeps `amount - paid`).
- A call of N credits on endpoint E at instant T draws from the grants spendable at T for E
  (effective at or before T, not expired at T, credit left, E in `applies_to` or none set),
  lowest priority first, then soonest expiry (never: last), then oldest; then from the pot when
  it is above zero; what is left is owed (the pot goes below zero). Its whole price is recorded.
- A 4xx/5xx call is charged, then refunded in full. A free call (0 credits) charges nothing.
- A refund gives back to the draws last first: to the grant drawn from while it is still open
  and not expired at the refund's instant, else to the pot.
- A negative adjustment draws like a call on any endpoint (no `applies_to` check), then the pot,
  then owed; refused (`insufficient-credits`) when available would go below -credit_limit,
  unless `allow_negative`. A positive one adds to the pot.
- `/check` (N, E, T): allowed iff available - N >= -credit_limit and owed-after <= credit_limit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from services.core.model import (
    AdjustBalance,
    CaptureHold,
    ChangeSettings,
    Command,
    ConsumeUsage,
    ExpireDue,
    GrantCredits,
    PlaceHold,
    RefundRequest,
    ReleaseHold,
    VoidGrant,
)

NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class MGrant:
    grant_id: str
    kind: str
    amount: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    applies_to: tuple[str, ...] | None
    order: int  # creation order: "oldest grant"
    remaining: int = 0
    scheduled: bool = True  # not yet effective: nothing spendable
    closed: bool = False  # expired or voided

    def expired_at(self, at: datetime) -> bool:
        return self.expires_at is not None and at >= self.expires_at

    def spendable_for(self, endpoint: str | None, at: datetime) -> bool:
        """`endpoint` None: any endpoint (an operator's adjustment)."""
        return (
            not self.closed
            and not self.scheduled
            and self.remaining > 0
            and self.effective_at <= at
            and not self.expired_at(at)
            and (endpoint is None or self.applies_to is None or endpoint in self.applies_to)
        )


@dataclass
class MHold:
    amount: int
    expires_at: datetime


@dataclass
class MDraw:
    grant_id: str | None  # None: the pot (credit tied to no grant, or owed)
    amount: int
    refunded: int = 0


@dataclass
class MCall:
    """A charged request (a usage call with credits, or a capture)."""

    price: int
    successful: bool
    day: date
    endpoint: str
    draws: list[MDraw]

    @property
    def refundable(self) -> int:
        return sum(d.amount - d.refunded for d in self.draws)


@dataclass(frozen=True)
class Plan:
    """What a call of `credits` would draw: (grant_id, amount) in order, the pot, what is owed."""

    grants: tuple[tuple[str, int], ...]
    from_pot: int
    owed: int


@dataclass(frozen=True)
class MQuote:
    plan: Plan
    allowed: bool


@dataclass(frozen=True)
class MFigures:
    balance: int
    reserved: int
    available: int
    scheduled: int
    overage: int
    unbucketed: int
    granted_total: int
    consumed_total: int
    buckets: tuple[tuple[str, int, int], ...]  # (kind, amount, balance)
    reset_at: datetime | None


@dataclass
class Outcome:
    """What the model says one command does."""

    rejected: str | None = None
    plan: Plan | None = None  # a call's or a capture's charge; an adjustment's draw
    # A void of a grant that has expired: nothing is left to leave, so refusing it
    # (`unknown-grant`) and accepting it (a 0-credit `void`) come to the same money.
    either: bool = False


@dataclass
class MoneyModel:
    grants: dict[str, MGrant] = field(default_factory=dict)
    pot: int = 0
    holds: dict[str, MHold] = field(default_factory=dict)
    credit_limit: int = 0
    calls: dict[str, MCall] = field(default_factory=dict)
    granted_total: int = 0  # credit that became spendable
    consumed_total: int = 0  # what calls were charged, less refunds
    # Accepted calls per (endpoint, UTC day): usage (free and failed included), charged captures.
    requests: dict[tuple[str, date], int] = field(default_factory=dict)

    # --- figures ------------------------------------------------------------------------

    @property
    def balance(self) -> int:
        return self.pot + sum(g.remaining for g in self.grants.values() if not g.closed)

    @property
    def reserved(self) -> int:
        return sum(h.amount for h in self.holds.values())

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def owed(self) -> int:
        return max(-self.pot, 0)

    def at(self, at: datetime) -> MoneyModel:
        """A copy with everything due at `at` applied (a read at an instant)."""
        later = copy.copy(self)
        later.grants = {k: copy.copy(g) for k, g in self.grants.items()}
        later.holds = dict(self.holds)
        later.calls = {}  # a read draws nothing and refunds nothing
        later.come_due(at)
        return later

    def figures(self, at: datetime) -> MFigures:
        now = self.at(at)
        kinds: dict[str, tuple[int, int]] = {}
        resets: list[datetime] = []
        for g in now.grants.values():
            if g.closed or g.scheduled:
                continue
            amount, balance = kinds.get(g.kind, (0, 0))
            kinds[g.kind] = (amount + g.amount, balance + g.remaining)
            if g.kind == "subscription" and g.remaining > 0 and g.expires_at is not None:
                resets.append(g.expires_at)
        buckets = [(kind, a, b) for kind, (a, b) in sorted(kinds.items())]
        if now.pot > 0:
            buckets.append(("unbucketed", now.pot, now.pot))
        elif now.pot < 0:
            buckets.append(("overage", -now.pot, now.pot))
        scheduled = sum(g.amount for g in now.grants.values() if g.scheduled and not g.closed)
        return MFigures(
            balance=now.balance, reserved=now.reserved, available=now.available,
            scheduled=scheduled, overage=now.owed, unbucketed=max(now.pot, 0),
            granted_total=now.granted_total, consumed_total=now.consumed_total,
            buckets=tuple(buckets), reset_at=min(resets, default=None),
        )  # fmt: skip

    def quote(self, credits: int, endpoint: str | None, at: datetime) -> MQuote:
        """Would the writer charge a call of `credits` on `endpoint` at `at` within the limit."""
        now = self.at(at)
        plan = now.plan(credits, endpoint, at)
        allowed = (
            now.available - credits >= -now.credit_limit
            and now.owed + plan.owed <= now.credit_limit
        )
        return MQuote(plan, allowed)

    # --- the rules ----------------------------------------------------------------------

    def come_due(self, at: datetime) -> None:
        due: list[tuple[datetime, int, int, str]] = []
        for g in self.grants.values():
            if g.closed:
                continue
            if g.scheduled and g.effective_at <= at:
                due.append((g.effective_at, 0, g.order, g.grant_id))
            if g.expires_at is not None and g.expires_at <= at:
                due.append((g.expires_at, 1, g.order, g.grant_id))
        for order, (hold_id, hold) in enumerate(self.holds.items()):
            if hold.expires_at <= at:
                due.append((hold.expires_at, 2, order, hold_id))
        for _, what, _, ident in sorted(due):
            if what == 0:
                self._make_spendable(self.grants[ident])
            elif what == 1:
                g = self.grants[ident]
                g.remaining, g.closed = 0, True  # the remainder leaves
            else:
                del self.holds[ident]

    def _make_spendable(self, g: MGrant) -> None:
        paid = min(g.amount, self.owed)
        g.scheduled = False
        g.remaining = g.amount - paid
        self.pot += paid
        self.granted_total += g.amount

    def plan(self, credits: int, endpoint: str | None, at: datetime) -> Plan:
        usable = sorted(
            (g for g in self.grants.values() if g.spendable_for(endpoint, at)),
            key=lambda g: (g.priority, g.expires_at or NEVER, g.order),
        )
        left = credits
        draws: list[tuple[str, int]] = []
        for g in usable:
            if left == 0:
                break
            take = min(left, g.remaining)
            draws.append((g.grant_id, take))
            left -= take
        from_pot = min(left, max(self.pot, 0))
        return Plan(tuple(draws), from_pot, left - from_pot)

    def _draw(self, plan: Plan) -> list[MDraw]:
        for grant_id, amount in plan.grants:
            self.grants[grant_id].remaining -= amount
        self.pot -= plan.from_pot + plan.owed
        draws = [MDraw(grant_id, amount) for grant_id, amount in plan.grants]
        if plan.from_pot + plan.owed > 0:
            draws.append(MDraw(None, plan.from_pot + plan.owed))
        return draws

    def _charge(
        self, request_id: str, credits: int, endpoint: str, at: datetime, successful: bool
    ) -> Plan:
        plan = self.plan(credits, endpoint, at)
        draws = self._draw(plan)
        day = at.astimezone(UTC).date()
        self.calls[request_id] = MCall(credits, successful, day, endpoint, draws)
        self.consumed_total += credits
        return plan

    def _refund(self, request_id: str, amount: int, at: datetime) -> None:
        call = self.calls[request_id]
        left = amount
        for draw in reversed(call.draws):
            give = min(left, draw.amount - draw.refunded)
            if give == 0:
                continue
            draw.refunded += give
            g = self.grants.get(draw.grant_id) if draw.grant_id is not None else None
            if g is not None and not g.closed and not g.expired_at(at):
                g.remaining += give
            else:
                self.pot += give  # its grant expired or was voided: back unbucketed
            left -= give
            if left == 0:
                break
        assert left == 0
        self.consumed_total -= amount

    def apply(self, command: Command) -> Outcome:
        at = command.occurred_at
        self.come_due(at)
        if isinstance(command, ConsumeUsage):
            self._count(command.endpoint, at)
            if command.credits == 0:
                return Outcome()
            ok = command.status_code < 400
            plan = self._charge(command.request_id, command.credits, command.endpoint, at, ok)
            if not ok:
                self._refund(command.request_id, command.credits, at)
            return Outcome(plan=plan)
        if isinstance(command, GrantCredits):
            return self._grant(command)
        if isinstance(command, AdjustBalance):
            if command.amount > 0:
                self.pot += command.amount
                return Outcome()
            amount = -command.amount
            if not command.allow_negative and self.available - amount < -self.credit_limit:
                return Outcome(rejected="insufficient-credits")
            plan = self.plan(amount, None, at)
            self._draw(plan)
            return Outcome(plan=plan)
        if isinstance(command, RefundRequest):
            call = self.calls.get(command.request_id)
            if call is None:
                return Outcome(rejected="unknown-request")
            if call.refundable == 0:
                return Outcome(rejected="already-refunded")
            amount = command.amount if command.amount is not None else call.refundable
            if amount > call.refundable:
                return Outcome(rejected="refund-exceeds-consumed")
            self._refund(command.request_id, amount, at)
            return Outcome()
        if isinstance(command, VoidGrant):
            g = self.grants.get(command.grant_id)
            if g is None or g.closed:
                expired = g is not None and g.expired_at(at)
                return Outcome(rejected="unknown-grant", either=expired)
            g.remaining, g.closed = 0, True
            return Outcome()
        if isinstance(command, PlaceHold):
            if command.hold_id in self.holds:
                return Outcome(rejected="hold-exists")
            if command.expires_at <= at:
                return Outcome(rejected="hold-expired")
            if command.amount > self.available:
                return Outcome(rejected="insufficient-available")
            self.holds[command.hold_id] = MHold(command.amount, command.expires_at)
            return Outcome()
        if isinstance(command, CaptureHold):
            hold = self.holds.get(command.hold_id)
            if hold is None:
                return Outcome(rejected="unknown-hold")
            amount = command.amount if command.amount is not None else hold.amount
            if amount > hold.amount:
                return Outcome(rejected="capture-exceeds-hold")
            if command.request_id in self.calls:
                return Outcome(rejected="request-id-exists")
            del self.holds[command.hold_id]
            if amount == 0:
                return Outcome()
            self._count(command.endpoint, at)
            plan = self._charge(command.request_id, amount, command.endpoint, at, True)
            return Outcome(plan=plan)
        if isinstance(command, ReleaseHold):
            if self.holds.pop(command.hold_id, None) is None:
                return Outcome(rejected="unknown-hold")
            return Outcome()
        if isinstance(command, ChangeSettings):
            if command.credit_limit is not None:
                self.credit_limit = command.credit_limit
            return Outcome()
        assert isinstance(command, ExpireDue)
        return Outcome()

    def _count(self, endpoint: str, at: datetime) -> None:
        key = (endpoint, at.astimezone(UTC).date())
        self.requests[key] = self.requests.get(key, 0) + 1

    def _grant(self, command: GrantCredits) -> Outcome:
        existing = self.grants.get(command.command_id)
        if existing is not None and not existing.closed:
            return Outcome(rejected="grant-exists")
        start = max(command.occurred_at, command.effective_at)
        if command.expires_at is not None and command.expires_at <= start:
            return Outcome(rejected="grant-expired")
        g = MGrant(
            grant_id=command.command_id, kind=command.kind.value, amount=command.amount,
            priority=command.priority, effective_at=command.effective_at,
            expires_at=command.expires_at, applies_to=command.applies_to,
            order=len(self.grants),
        )  # fmt: skip
        self.grants[command.command_id] = g
        if command.effective_at <= command.occurred_at:
            self._make_spendable(g)
        return Outcome()

    # --- what the read models should show ------------------------------------------------

    def scans_by_day(self) -> dict[date, int]:
        """One scan per charged successful call on its day, taken back by a full refund."""
        days: dict[date, int] = {}
        for call in self.calls.values():
            if call.successful and call.refundable > 0:
                days[call.day] = days.get(call.day, 0) + 1
        return {d: n for d, n in days.items() if n}

    def credits_by_day(self) -> dict[date, int]:
        days: dict[date, int] = {}
        for (_, day), n in self.credits_by_endpoint_day().items():
            days[day] = days.get(day, 0) + n
        return {d: n for d, n in days.items() if n}

    def credits_by_endpoint_day(self) -> dict[tuple[str, date], int]:
        """What calls were charged, net of refunds, on the call's own endpoint and day."""
        keys: dict[tuple[str, date], int] = {}
        for call in self.calls.values():
            key = (call.endpoint, call.day)
            keys[key] = keys.get(key, 0) + call.refundable
        return {k: n for k, n in keys.items() if n}
