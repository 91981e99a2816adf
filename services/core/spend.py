"""The one rule for what can be spent, read at an instant: `quote` answers `/check` and `figures`
answers the balance, from the same state and the same drawdown the writer charges with.

A stored state is as of its last entry; a grant may have become spendable, or a bucket or hold
expired, since. `due_state` applies what event time `at` has made due, exactly as the writer
does before its next command at `at` (expiry.expire_due), so a read never shows credit the
writer would not draw, nor hides credit it would.
"""

from __future__ import annotations

from datetime import datetime

from services.core.drawdown import DrawPlan, plan_draws, within_limit
from services.core.expiry import expire_due
from services.core.model import AccountState, Bucket, BucketKind
from services.core.tape import Tape
from services.core.value import value_type


def due_state(state: AccountState, at: datetime) -> AccountState:
    """The state with every activation and expiry due at `at` applied."""
    tape = Tape(state, at)
    expire_due(tape, at)
    return tape.state


@value_type
class Quote:
    """A call of `credits` on an endpoint at an instant, as the writer would charge it."""

    credits: int
    plan: DrawPlan
    available_after: int
    overage_after: int
    within_limit: bool  # what `/check` answers: allowed

    @property
    def owed(self) -> int:
        return self.plan.owed


def quote_now(state: AccountState, credits: int, endpoint: str | None, at: datetime) -> Quote:
    """`quote` on a state already due at `at` (the writer's tape after expire_due)."""
    plan = plan_draws(state, credits, endpoint, at)
    available_after = state.available - credits
    overage_after = state.overage + plan.owed
    allowed = within_limit(available_after, overage_after, state.settings.credit_limit)
    return Quote(credits, plan, available_after, overage_after, allowed)


def quote(state: AccountState, credits: int, endpoint: str | None, at: datetime) -> Quote:
    return quote_now(due_state(state, at), credits, endpoint, at)


@value_type
class KindFigure:
    kind: str  # a bucket kind, `unbucketed` (credit tied to no grant) or `overage` (owed)
    amount: int  # granted (unbucketed: the credit; overage: what is owed)
    balance: int  # what is left (overage: below zero)


@value_type
class BalanceFigures:
    """Every figure of `GET /v1/credits/balance`; the kinds' balances add up to `balance`."""

    seq: int
    balance: int
    reserved: int
    available: int
    scheduled: int
    overage: int
    unbucketed: int
    granted_total: int
    consumed_total: int
    buckets: tuple[KindFigure, ...]
    reset_at: datetime | None


def figures(state: AccountState, at: datetime) -> BalanceFigures:
    now = due_state(state, at)
    spendable = [b for b in now.buckets if not b.scheduled and not b.expired_at(at)]
    kinds: dict[str, tuple[int, int]] = {}
    for bucket in spendable:
        amount, balance = kinds.get(bucket.kind.value, (0, 0))
        kinds[bucket.kind.value] = (amount + bucket.granted, balance + bucket.remaining)
    buckets = [KindFigure(kind, a, b) for kind, (a, b) in sorted(kinds.items())]
    if now.unbucketed > 0:
        buckets.append(KindFigure("unbucketed", now.unbucketed, now.unbucketed))
    if now.overage > 0:
        buckets.append(KindFigure("overage", now.overage, -now.overage))
    assert sum(k.balance for k in buckets) == now.balance, "bucket balances add up to balance"
    return BalanceFigures(
        seq=now.seq, balance=now.balance, reserved=now.reserved, available=now.available,
        scheduled=now.scheduled, overage=now.overage, unbucketed=now.unbucketed,
        granted_total=now.granted_total, consumed_total=now.consumed_total,
        buckets=tuple(buckets), reset_at=_reset_at(spendable, at),
    )  # fmt: skip


def _reset_at(spendable: list[Bucket], at: datetime) -> datetime | None:
    """The earliest expiry of an effective subscription grant with credit left."""
    expiries = [
        b.expires_at
        for b in spendable
        if b.kind is BucketKind.SUBSCRIPTION
        and b.remaining > 0
        and b.expires_at is not None
        and b.expires_at > at
    ]
    return min(expiries, default=None)
