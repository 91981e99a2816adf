"""evolve(state, event) -> state: the only way account state changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from services.core.drawdown import within_limit
from services.core.errors import LedgerGap
from services.core.model import (
    AccountState,
    AlertFlags,
    AlertKind,
    AlertRaised,
    Bucket,
    CommandRejected,
    Consumption,
    Draw,
    EntryReason,
    Event,
    LedgerEntry,
    SettingsChanged,
)


def evolve(state: AccountState, event: Event) -> AccountState:
    assert event.account_id == state.account_id, "event applied to another account"
    if isinstance(event, LedgerEntry):
        return _evolve_entry(state, event)
    if isinstance(event, AlertRaised):
        if event.kind is AlertKind.GRANT_EXPIRING:
            return replace(state, buckets=_noticed(state.buckets, event))
        return replace(state, flags=_raise_flag(state.flags, event))
    if isinstance(event, SettingsChanged):
        return replace(state, settings=event.settings)
    assert isinstance(event, CommandRejected)
    return state


def evolve_all(state: AccountState, events: Iterable[Event]) -> AccountState:
    for event in events:
        state = evolve(state, event)
    return state


def _evolve_entry(state: AccountState, entry: LedgerEntry) -> AccountState:
    if entry.seq != state.seq + 1:
        raise LedgerGap(f"{entry.account_id}: seq gap: state at {state.seq}, entry {entry.seq}")
    if entry.balance_after != state.balance + entry.delta:
        raise LedgerGap(f"{entry.account_id}/{entry.seq}: balance_after disagrees")
    buckets = _evolve_buckets(state.buckets, entry)
    # A bucket that is empty and past its expiry can take nothing more: drop it.
    buckets = tuple(b for b in buckets if b.remaining > 0 or not b.expired_at(entry.occurred_at))
    holds = state.holds
    if entry.hold is not None:
        assert all(h.hold_id != entry.hold.hold_id for h in holds), "hold id opened twice"
        holds = (*holds, entry.hold)
    elif entry.reason is EntryReason.RELEASE:
        hold_id = entry.metadata["hold_id"]
        assert any(h.hold_id == hold_id for h in holds), f"release of unknown hold {hold_id}"
        holds = tuple(h for h in holds if h.hold_id != hold_id)
    granted_total, consumed_total = state.granted_total, state.consumed_total
    if entry.reason is EntryReason.GRANT:
        granted_total += entry.delta
    elif entry.reason in (EntryReason.CONSUME, EntryReason.REFUND):
        consumed_total -= entry.delta  # a refund's delta is positive: it lowers the total
    after = replace(
        state,
        seq=entry.seq,
        balance=entry.balance_after,
        buckets=buckets,
        holds=holds,
        consumptions=_evolve_consumptions(state.consumptions, entry),
        granted_total=granted_total,
        consumed_total=consumed_total,
    )
    assert after.reserved == state.reserved + entry.reserved_delta, "reserved_delta disagrees"
    assert after.reserved >= 0, "reserved below zero"
    return replace(after, flags=_rearm(after))


def _evolve_buckets(buckets: tuple[Bucket, ...], entry: LedgerEntry) -> tuple[Bucket, ...]:
    if entry.grant is not None:
        # A grant entry opens its bucket, or (scheduled before) makes its credit spendable.
        opened = entry.grant
        if all(b.grant_id != opened.grant_id for b in buckets):
            assert opened.remaining == entry.delta, "a grant entry opens its bucket with its delta"
            return (*buckets, opened)
        before = next(b for b in buckets if b.grant_id == opened.grant_id)
        assert before.scheduled and not opened.scheduled, "only a scheduled grant activates"
        assert before.remaining + entry.delta == opened.remaining, "activation adds its delta"
        return tuple(opened if b.grant_id == opened.grant_id else b for b in buckets)
    if entry.bucket_grant_id is None:
        return buckets
    if entry.reason in (EntryReason.EXPIRY, EntryReason.VOID):
        closing = next(b for b in buckets if b.grant_id == entry.bucket_grant_id)
        assert closing.remaining + entry.delta == 0, "a closing entry takes all that is left"
        return tuple(b for b in buckets if b.grant_id != entry.bucket_grant_id)
    changed: list[Bucket] = []
    found = False
    for bucket in buckets:
        if bucket.grant_id == entry.bucket_grant_id:
            found = True
            remaining = bucket.remaining + entry.delta
            assert remaining >= 0, f"bucket {bucket.grant_id} would go below zero"
            bucket = replace(bucket, remaining=remaining)
        changed.append(bucket)
    assert found, f"entry names unknown bucket {entry.bucket_grant_id}"
    return tuple(changed)


def _evolve_consumptions(
    consumptions: Mapping[str, Consumption], entry: LedgerEntry
) -> Mapping[str, Consumption]:
    if entry.request_id is None or entry.reason not in (EntryReason.CONSUME, EntryReason.REFUND):
        return consumptions
    updated = dict(consumptions)
    updated[entry.request_id] = consumption_after(updated.get(entry.request_id), entry)
    return updated


def consumption_after(consumption: Consumption | None, entry: LedgerEntry) -> Consumption:
    """Lineage of one request after one of its consume or refund entries."""
    assert entry.request_id is not None
    if entry.reason is EntryReason.CONSUME:
        draw = Draw(entry.bucket_grant_id, entry.bucket_kind, -entry.delta)
        if consumption is not None:
            return replace(consumption, draws=(*consumption.draws, draw))
        endpoint = entry.metadata.get("endpoint")
        return Consumption(
            entry.request_id,
            (draw,),
            endpoint=endpoint if isinstance(endpoint, str) else None,
            consumed_at=entry.occurred_at,
        )
    assert consumption is not None, f"refund of unknown request {entry.request_id}"
    refund_left = entry.delta
    target = entry.metadata.get("refund_of_grant", entry.bucket_grant_id)
    draws = list(consumption.draws)
    for index in reversed(range(len(draws))):  # refunds undo the last draws first
        draw = draws[index]
        if draw.grant_id != target or refund_left == 0:
            continue
        take = min(refund_left, draw.amount - draw.refunded)
        draws[index] = replace(draw, refunded=draw.refunded + take)
        refund_left -= take
    assert refund_left == 0, f"refund beyond what request {entry.request_id} consumed"
    return replace(consumption, draws=tuple(draws))


def _noticed(buckets: tuple[Bucket, ...], alert: AlertRaised) -> tuple[Bucket, ...]:
    """A grant is noticed once: its bucket remembers the `grant_expiring` alert."""
    grant_id = alert.details["grant_id"]
    assert any(b.grant_id == grant_id for b in buckets), f"notice of unknown grant {grant_id}"
    return tuple(replace(b, expiry_noticed=True) if b.grant_id == grant_id else b for b in buckets)


def _raise_flag(flags: AlertFlags, alert: AlertRaised) -> AlertFlags:
    if alert.kind is AlertKind.LOW_BALANCE:
        return replace(flags, low_balance=True)
    if alert.kind is AlertKind.DEPLETED:
        return replace(flags, depleted=True)
    if alert.kind is AlertKind.OVERAGE:
        return replace(flags, overage=True)
    if alert.kind is AlertKind.CREDIT_LIMIT_EXCEEDED:
        return replace(flags, over_limit=True)
    if alert.kind is AlertKind.AUTO_RELOAD_REQUESTED:
        day = alert.occurred_at.date()
        count = flags.auto_reloads_that_day if flags.auto_reload_day == day else 0
        return replace(
            flags, auto_reload=True, auto_reload_day=day, auto_reloads_that_day=count + 1
        )
    return flags


def _rearm(state: AccountState) -> AlertFlags:
    """An alert fires once per crossing: it re-arms when `available` is back above its line."""
    flags, settings, available = state.flags, state.settings, state.available
    low_line = settings.low_balance_threshold
    if flags.low_balance and (low_line is None or available >= low_line):
        flags = replace(flags, low_balance=False)
    if flags.depleted and available > 0:
        flags = replace(flags, depleted=False)
    if flags.overage and state.overage == 0:
        flags = replace(flags, overage=False)
    if flags.over_limit and within_limit(available, state.overage, settings.credit_limit):
        flags = replace(flags, over_limit=False)
    reload = settings.auto_reload
    if flags.auto_reload and (reload is None or available >= reload.threshold):
        flags = replace(flags, auto_reload=False)
    return flags
