"""decide(state, command, recorded_at) -> events. Pure: same inputs, same events.

Every command first lets due expiries happen at their own times (expiry.py), then does its own
work, then raises the balance alerts its entries crossed (alerts.py). A command that breaks a
rule writes no entry of its own and yields a `CommandRejected` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.core.alerts import notice_expiring, raise_crossings
from services.core.consume import consume, refund_command, write_draws
from services.core.expiry import expire_due
from services.core.grants import open_grant, void_grant
from services.core.holds import capture_hold, place_hold, release_hold
from services.core.model import (
    AccountSettings,
    AccountState,
    AdjustBalance,
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
from services.core.spend import quote_now
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
    notice_expiring(tape, command.occurred_at)
    return tuple(tape.events), tape.state


def _adjust(tape: Tape, adjustment: AdjustBalance) -> None:
    """Up: credit tied to no grant (it pays what is owed first: the pot is signed). Down: drawn
    like a call on any endpoint, then owed; refused past the credit limit unless the operator
    says `allow_negative`."""
    assert adjustment.amount != 0, "an adjustment changes the balance"
    metadata: dict[str, MetadataValue] = {"reason": adjustment.reason}
    source = f"adjustment:{adjustment.command_id}"
    at = adjustment.occurred_at
    if adjustment.amount > 0:
        tape.entry(
            delta=adjustment.amount, reason=EntryReason.ADJUSTMENT, source=source,
            occurred_at=at, metadata=metadata,
        )  # fmt: skip
        return
    quote = quote_now(tape.state, -adjustment.amount, None, at)
    if not adjustment.allow_negative and quote.available_after < -tape.state.settings.credit_limit:
        tape.reject(
            "insufficient-credits",
            f"an adjustment of {adjustment.amount} would take available to"
            f" {quote.available_after}, below the credit limit of"
            f" {tape.state.settings.credit_limit} (allow_negative: true to force it)",
        )
        return
    write_draws(tape, quote.plan, EntryReason.ADJUSTMENT, source, at, metadata)


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
        grant_expiring_notice_s=(
            command.grant_expiring_notice_s
            if command.grant_expiring_notice_s is not None
            else old.grant_expiring_notice_s
        ),
    )
    tape.emit(SettingsChanged(tape.state.account_id, new))


def _expire(tape: Tape, command: ExpireDue) -> None:
    return None  # expire_due already ran for every command, this one included


_HANDLERS: dict[type, Callable[[Tape, Any], None]] = {
    ConsumeUsage: consume,
    GrantCredits: open_grant,
    AdjustBalance: _adjust,
    RefundRequest: refund_command,
    VoidGrant: void_grant,
    PlaceHold: place_hold,
    CaptureHold: capture_hold,
    ReleaseHold: release_hold,
    ChangeSettings: _settings,
    ExpireDue: _expire,
}
