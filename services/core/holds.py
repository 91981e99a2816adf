"""Holds reserve credits: `available` drops, the balance does not. A hold never reserves more than
is available, so two holds can never reserve the same credits."""

from __future__ import annotations

from datetime import datetime

from services.core.consume import charge  # a capture is a consume: the same drawdown
from services.core.model import (
    CaptureHold,
    EntryReason,
    Hold,
    MetadataValue,
    PlaceHold,
    ReleaseHold,
)
from services.core.tape import Tape


def place_hold(tape: Tape, command: PlaceHold) -> None:
    state = tape.state
    if any(h.hold_id == command.hold_id for h in state.holds):
        tape.reject("hold-exists", f"hold {command.hold_id!r} is already open")
    elif command.expires_at <= command.occurred_at:
        tape.reject("hold-expired", f"hold {command.hold_id!r} expires before it starts")
    elif command.amount > state.available:
        tape.reject(
            "insufficient-available",
            f"hold of {command.amount} but only {state.available} is available",
        )
    else:
        hold = Hold(command.hold_id, command.amount, command.expires_at)
        tape.entry(
            delta=0,
            reason=EntryReason.HOLD,
            source=f"hold:{command.hold_id}",
            occurred_at=command.occurred_at,
            metadata={"hold_id": command.hold_id, "amount": command.amount},
            reserved_delta=command.amount,
            hold=hold,
        )


def release_hold(tape: Tape, command: ReleaseHold) -> None:
    if _open_hold(tape, command.hold_id) is None:
        return
    _release(tape, command.hold_id, command.occurred_at, "released")


def capture_hold(tape: Tape, command: CaptureHold) -> None:
    hold = _open_hold(tape, command.hold_id)
    if hold is None:
        return
    amount = command.amount if command.amount is not None else hold.amount
    if amount > hold.amount:
        tape.reject("capture-exceeds-hold", f"capture of {amount} but {hold.amount} is held")
        return
    if command.request_id in tape.state.consumptions:
        tape.reject("request-id-exists", f"request {command.request_id!r} was already consumed")
        return
    _release(tape, hold.hold_id, command.occurred_at, "captured", captured=amount)
    metadata: dict[str, MetadataValue] = {"endpoint": command.endpoint, "hold_id": hold.hold_id}
    if amount > 0:
        charge(tape, command.request_id, amount, command.endpoint, command.occurred_at, metadata)


def _open_hold(tape: Tape, hold_id: str) -> Hold | None:
    hold = next((h for h in tape.state.holds if h.hold_id == hold_id), None)
    if hold is None:
        tape.reject("unknown-hold", f"no open hold {hold_id!r} (never placed, expired or closed)")
    return hold


def _release(tape: Tape, hold_id: str, at: datetime, why: str, captured: int | None = None) -> None:
    hold = next(h for h in tape.state.holds if h.hold_id == hold_id)
    metadata: dict[str, MetadataValue] = {"hold_id": hold_id, "reason": why, "amount": hold.amount}
    if captured is not None:
        metadata["captured"] = captured
    tape.entry(
        delta=0,
        reason=EntryReason.RELEASE,
        source=f"hold:{hold_id}",
        occurred_at=at,
        metadata=metadata,
        reserved_delta=-hold.amount,
    )
