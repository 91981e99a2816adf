"""Drawing credits: which buckets a consume takes from, within the account's credit limit.

Order: lowest priority, then soonest expiry, then oldest grant; what no usable bucket covers is
drawn from no bucket, as far as the credit limit lets the unbucketed pot go below zero. What lies
beyond is not charged: the caller records it, flags it and alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core.model import AccountState, Bucket


@dataclass(frozen=True, slots=True)
class DrawPlan:
    draws: tuple[tuple[Bucket | None, int], ...]
    uncharged: int  # beyond the credit limit

    @property
    def charged(self) -> int:
        return sum(amount for _, amount in self.draws)


def plan_draws(
    state: AccountState,
    credits: int,
    endpoint: str | None,
    at: datetime,
    *,
    respect_credit_limit: bool = True,
) -> DrawPlan:
    assert credits >= 0
    usable = sorted(
        (b for b in state.buckets if b.usable_for(endpoint, at)), key=Bucket.drawdown_key
    )
    draws: list[tuple[Bucket | None, int]] = []
    left = credits
    for bucket in usable:
        if left == 0:
            break
        amount = min(left, bucket.remaining)
        draws.append((bucket, amount))
        left -= amount
    unbucketed = left
    if respect_credit_limit:
        # Bucket draws lower balance and buckets alike, so the pot is the same after them.
        room = max(0, state.unbucketed + state.settings.credit_limit)
        unbucketed = min(left, room)
    if unbucketed > 0:
        draws.append((None, unbucketed))
    plan = DrawPlan(tuple(draws), left - unbucketed)
    assert plan.charged + plan.uncharged == credits, "drawdown lost credits"
    return plan
