"""decide_run: `decide_and_evolve` over one account's commands in order, in one fold.

Most of an account's commands are plain calls: credits drawn from one bucket, no expiry due, no
alert line crossed. For those the general path (a tape, `evolve` per entry, a new state per
event) costs several times the entry it writes. Here such a call writes its entry straight from
a few running totals, and the state is built once, when the run ends or a command needs the
general path. Anything else (a refund, several buckets, an expiry due, a line crossed) goes
through `decide_and_evolve` unchanged, so the events and the final state are exactly the general
path's (tests/unit/test_core_run.py folds random histories both ways).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime

from services.core.decide import decide_and_evolve
from services.core.model import (
    AccountState,
    Bucket,
    Command,
    ConsumeUsage,
    Consumption,
    Draw,
    EntryReason,
    Event,
    LedgerEntry,
)


def decide_run(
    state: AccountState, commands: Sequence[tuple[Command, datetime]]
) -> tuple[list[tuple[Event, ...]], AccountState]:
    """(command, recorded_at) pairs in order -> each command's events, and the state after all."""
    results: list[tuple[Event, ...]] = []
    fold = _CallFold(state)
    for command, recorded_at in commands:
        if isinstance(command, ConsumeUsage):
            entry = fold.plain_call(command, recorded_at)
            if entry is not None:
                results.append((entry,))
                continue
        events, after = decide_and_evolve(fold.state(), command, recorded_at)
        results.append(events)
        fold = _CallFold(after)
    return results, fold.state()


class _CallFold:
    """Running totals of plain calls on top of `base`; `state()` builds the state they reach."""

    def __init__(self, base: AccountState) -> None:
        self.base = base
        self.seq, self.balance = base.seq, base.balance
        self.consumed = base.consumed_total
        self.remaining = {b.grant_id: b.remaining for b in base.buckets}
        self.consumptions: dict[str, Consumption] | None = None  # copied on the first call
        flags, settings = base.flags, base.settings
        # Flags all down and lines fixed: a call that keeps `available` at or above every line
        # raises no alert and re-arms nothing (alerts.raise_crossings, evolve._rearm).
        # Nothing owed either: a call drawn from one bucket leaves the pot as it is, so it stays
        # at or above zero (no overage, within any credit limit).
        self.alert_free = (
            not (
                flags.low_balance
                or flags.depleted
                or flags.auto_reload
                or flags.overage
                or flags.over_limit
            )
            and base.pot >= 0
        )
        reload = settings.auto_reload
        self.reserved = base.reserved
        self.floor = max(
            1,  # depleted: available <= 0
            settings.low_balance_threshold if settings.low_balance_threshold is not None else 1,
            reload.threshold if reload is not None else 1,
        )
        # Before the first expiry nothing is due and no empty bucket is pruned (expiry.py,
        # evolve._evolve_entry): past it, the general path decides.
        expiries = [b.expires_at for b in base.buckets if b.expires_at is not None]
        expiries += [b.effective_at for b in base.buckets if b.scheduled]  # an activation
        expiries += [h.expires_at for h in base.holds]
        expiries += base.notices_due()  # a `grant_expiring` notice (alerts.notice_expiring)
        self.first_expiry = min(expiries, default=None)
        self.draw_order = sorted(base.buckets, key=Bucket.drawdown_key)

    def plain_call(self, usage: ConsumeUsage, recorded_at: datetime) -> LedgerEntry | None:
        """The call's one consume entry, folded in; None when the call needs the general path."""
        assert usage.account_id == self.base.account_id, "command routed to another account"
        at = usage.occurred_at
        if usage.credits <= 0 or usage.status_code >= 400 or not self.alert_free:
            return None
        if self.first_expiry is not None and at >= self.first_expiry:
            return None
        if self.balance - usage.credits - self.reserved < self.floor:
            return None
        lineage = self.consumptions if self.consumptions is not None else self.base.consumptions
        if usage.request_id in lineage:
            return None
        bucket = self._first_usable(usage.endpoint, at)
        if bucket is None or self.remaining[bucket.grant_id] < usage.credits:
            return None  # several buckets, or none: the general drawdown decides
        return self._write(usage, recorded_at, bucket)

    def _first_usable(self, endpoint: str, at: datetime) -> Bucket | None:
        for bucket in self.draw_order:  # not expired: `at` is before the first expiry
            if (
                self.remaining[bucket.grant_id] > 0
                and bucket.effective_at <= at
                and (bucket.applies_to is None or endpoint in bucket.applies_to)
            ):
                return bucket
        return None

    def _write(self, usage: ConsumeUsage, recorded_at: datetime, bucket: Bucket) -> LedgerEntry:
        credits, request_id = usage.credits, usage.request_id
        self.seq += 1
        self.balance -= credits
        self.consumed += credits
        self.remaining[bucket.grant_id] -= credits
        if self.consumptions is None:
            self.consumptions = dict(self.base.consumptions)
        draw = Draw(bucket.grant_id, bucket.kind, credits)
        self.consumptions[request_id] = Consumption(
            request_id, (draw,), endpoint=usage.endpoint, consumed_at=usage.occurred_at
        )
        return LedgerEntry(
            account_id=self.base.account_id, seq=self.seq, delta=-credits,
            balance_after=self.balance, reason=EntryReason.CONSUME,
            source=f"request:{request_id}", bucket_grant_id=bucket.grant_id,
            bucket_kind=bucket.kind,
            metadata={"endpoint": usage.endpoint, "key_id": usage.key_id,
                      "status_code": usage.status_code},
            occurred_at=usage.occurred_at, recorded_at=recorded_at, request_id=request_id,
        )  # fmt: skip

    def state(self) -> AccountState:
        base = self.base
        if self.consumptions is None:
            return base  # no plain call folded
        remaining = self.remaining
        buckets = tuple(
            b if b.remaining == remaining[b.grant_id] else _with_remaining(b, remaining[b.grant_id])
            for b in base.buckets
        )
        # `replace(base, seq=.., balance=.., buckets=.., consumptions=.., consumed_total=..)`,
        # built positionally: once per account and batch, and `replace` walks every field.
        return AccountState(
            base.account_id, self.seq, self.balance, buckets, base.holds, base.settings,
            base.flags, self.consumptions, base.granted_total, self.consumed,
        )  # fmt: skip


def _with_remaining(b: Bucket, remaining: int) -> Bucket:
    """`replace(b, remaining=remaining)`, built positionally."""
    return Bucket(
        b.grant_id, b.kind, b.priority, b.effective_at, b.expires_at, b.granted_seq, remaining,
        b.applies_to, b.granted, b.pending, b.source, b.expiry_noticed,
    )  # fmt: skip


# The positional constructions above follow the fields' order: a field added, removed or moved
# must show here rather than shift values silently (tests/unit/test_core_run.py also holds
# them equal to `replace`).
assert [f.name for f in fields(AccountState)] == [
    "account_id", "seq", "balance", "buckets", "holds", "settings", "flags", "consumptions",
    "granted_total", "consumed_total",
]  # fmt: skip
assert [f.name for f in fields(Bucket)] == [
    "grant_id", "kind", "priority", "effective_at", "expires_at", "granted_seq", "remaining",
    "applies_to", "granted", "pending", "source", "expiry_noticed",
]  # fmt: skip
