"""decide(state, command, recorded_at) -> events. Pure: same inputs, same events.

Every command first lets due expiries happen at their own times (expiry.py), then does its own
work, then raises the balance alerts its entries crossed (alerts.py). A command that breaks a
rule writes no entry of its own and yields a `CommandRejected` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.core.alerts import raise_crossings
from services.core.consume import consume, refund_command
from services.core.drawdown import plan_draws
from services.core.expiry import expire_due
from services.core.holds import capture_hold, place_hold, release_hold
from services.core.model import (
    AccountSettings,
    AccountState,
    AdjustBalance,
    Bucket,
    CaptureHold,
    ChangeSettings,
    Command,
    ConsumeUsage,
    EntryReason,
    Event,
    ExpireDue,
    GrantCredits,
    LedgerEntry,
    MetadataValue,
    PlaceHold,
    RefundRequest,
    ReleaseHold,
    SettingsChanged,
    VoidGrant,
)
from services.core.tape import Tape


def decide(state: AccountState, command: Command, recorded_at: datetime) -> tuple[Event, ...]:
    return decide_and_evolve(state, command, recorded_at)[0]


def decide_and_evolve(
    state: AccountState, command: Command, recorded_at: datetime
) -> tuple[tuple[Event, ...], AccountState]:
    """`decide`, with the state its events evolve to: the tape has folded them already, so the
    writer need not fold them a second time (it equals `evolve_all(state, events)`)."""
    assert command.account_id == state.account_id, "command routed to another account"
    tape = Tape(state, recorded_at)
    expire_due(tape, command.occurred_at)
    handler: Callable[[Tape, Any], None] = _HANDLERS[type(command)]
    handler(tape, command)
    if any(isinstance(e, LedgerEntry) for e in tape.events):
        raise_crossings(tape, command.occurred_at)
    return tuple(tape.events), tape.state


def _grant(tape: Tape, grant: GrantCredits) -> None:
    assert grant.amount > 0, "a grant adds credits"
    if tape.bucket(grant.command_id) is not None:
        tape.reject("grant-exists", f"grant {grant.command_id!r} is already open")
        return
    if grant.expires_at is not None and grant.expires_at <= max(
        grant.occurred_at, grant.effective_at
    ):
        # Credits that would be gone before they arrive: refused, not granted-and-expired.
        tape.reject("grant-expired", f"grant {grant.command_id!r} expires before it applies")
        return
    bucket = Bucket(
        grant_id=grant.command_id,
        kind=grant.kind,
        priority=grant.priority,
        effective_at=grant.effective_at,
        expires_at=grant.expires_at,
        granted_seq=tape.state.seq + 1,
        remaining=grant.amount,
        applies_to=grant.applies_to,
    )
    metadata: dict[str, MetadataValue] = {"name": grant.name} if grant.name else {}
    metadata.update(grant.metadata)
    tape.entry(
        delta=grant.amount,
        reason=EntryReason.GRANT,
        source=grant.source or f"grant:{grant.command_id}",
        occurred_at=grant.occurred_at,
        bucket=bucket,
        metadata=metadata,
        grant=bucket,
    )


def _adjust(tape: Tape, adjustment: AdjustBalance) -> None:
    """Up: credits outside any bucket. Down: drawn like usage (any endpoint), past any limit."""
    assert adjustment.amount != 0, "an adjustment changes the balance"
    metadata: dict[str, MetadataValue] = {"reason": adjustment.reason}
    source = f"adjustment:{adjustment.command_id}"
    if adjustment.amount > 0:
        tape.entry(
            delta=adjustment.amount,
            reason=EntryReason.ADJUSTMENT,
            source=source,
            occurred_at=adjustment.occurred_at,
            metadata=metadata,
        )
        return
    plan = plan_draws(
        tape.state, -adjustment.amount, None, adjustment.occurred_at, respect_credit_limit=False
    )
    for bucket, amount in plan.draws:
        tape.entry(
            delta=-amount,
            reason=EntryReason.ADJUSTMENT,
            source=source,
            occurred_at=adjustment.occurred_at,
            bucket=bucket,
            metadata=metadata,
        )


def _void(tape: Tape, command: VoidGrant) -> None:
    bucket = tape.bucket(command.grant_id)
    if bucket is None:
        tape.reject("unknown-grant", f"no open grant {command.grant_id!r}")
        return
    tape.entry(
        delta=-bucket.remaining,
        reason=EntryReason.VOID,
        source=f"void:{command.grant_id}",
        occurred_at=command.occurred_at,
        bucket=bucket,
        metadata={"command_id": command.command_id},
    )


def _settings(tape: Tape, command: ChangeSettings) -> None:
    old = tape.state.settings
    low = None if command.clear_low_balance_threshold else old.low_balance_threshold
    reload = None if command.clear_auto_reload else old.auto_reload
    new = AccountSettings(
        low_balance_threshold=(
            command.low_balance_threshold if command.low_balance_threshold is not None else low
        ),
        auto_reload=command.auto_reload if command.auto_reload is not None else reload,
        credit_limit=command.credit_limit if command.credit_limit is not None else old.credit_limit,
    )
    tape.emit(SettingsChanged(tape.state.account_id, new))


def _expire(tape: Tape, command: ExpireDue) -> None:
    return None  # expire_due already ran for every command, this one included


_HANDLERS: dict[type, Callable[[Tape, Any], None]] = {
    ConsumeUsage: consume,
    GrantCredits: _grant,
    AdjustBalance: _adjust,
    RefundRequest: refund_command,
    VoidGrant: _void,
    PlaceHold: place_hold,
    CaptureHold: capture_hold,
    ReleaseHold: release_hold,
    ChangeSettings: _settings,
    ExpireDue: _expire,
}
