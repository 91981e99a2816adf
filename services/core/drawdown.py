"""What can be spent: which credit a call draws, what it leaves owed, whether it stays within the
credit limit. The writer's drawdown and `/check` both come from here (spend.py wraps it for a
state read at an instant).

Order: the buckets spendable at the call's instant (effective, not expired, credit left, endpoint
in `applies_to` or none set) by lowest priority, then soonest expiry, then oldest grant; then
credit tied to no grant (the pot, when above zero); what is left is owed. A call is a fact: its
whole price is drawn or owed, never dropped. The credit limit decides what `/check` allows and
when `credit_limit_exceeded` alerts; it never makes a call free.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.core.model import AccountState, Bucket
from services.core.value import value_type


@value_type
class DrawPlan:
    draws: tuple[tuple[Bucket | None, int], ...]  # None: credit tied to no grant
    owed: int  # what no spendable credit covers

    @property
    def drawn(self) -> int:
        return sum(amount for _, amount in self.draws)


def plan_draws(state: AccountState, credits: int, endpoint: str | None, at: datetime) -> DrawPlan:
    """`state` as it stands at `at` (due expiries and activations applied: see spend.due_state).
    `endpoint` None: any bucket (an operator's adjustment)."""
    assert credits >= 0
    usable = draw_order(state.buckets, endpoint, at)
    draws: list[tuple[Bucket | None, int]] = []
    left = credits
    for bucket in usable:
        if left == 0:
            break
        amount = min(left, bucket.remaining)
        draws.append((bucket, amount))
        left -= amount
    from_pot = min(left, state.unbucketed)  # bucket draws leave the pot as it was
    if from_pot > 0:
        draws.append((None, from_pot))
    plan = DrawPlan(tuple(draws), left - from_pot)
    assert plan.drawn + plan.owed == credits, "drawdown lost credits"
    return plan


def draw_order(buckets: Iterable[Bucket], endpoint: str | None, at: datetime) -> list[Bucket]:
    """The buckets a call on `endpoint` at `at` may draw, in the order it draws them (the
    explain read shows this order: services/core/explain.py)."""
    return sorted((b for b in buckets if b.usable_for(endpoint, at)), key=Bucket.drawdown_key)


def within_limit(available: int, overage: int, credit_limit: int) -> bool:
    """The credit limit: how far below zero `available` may go, and so how much may be owed."""
    return available >= -credit_limit and overage <= credit_limit
