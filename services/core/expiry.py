"""Expiries in event time: before a command at time `t`, every bucket and hold that expired at
or before `t` leaves, each at its own expiry time, so a replay of the log decides the same."""

from __future__ import annotations

from datetime import datetime

from services.core.model import AlertKind, EntryReason
from services.core.tape import Tape


def expire_due(tape: Tape, at: datetime) -> None:
    due: list[tuple[datetime, int, str, str]] = []
    for bucket in tape.state.buckets:
        if bucket.expires_at is not None and bucket.expires_at <= at and bucket.remaining > 0:
            due.append((bucket.expires_at, bucket.granted_seq, "bucket", bucket.grant_id))
    for order, hold in enumerate(tape.state.holds):
        if hold.expires_at <= at:
            due.append((hold.expires_at, order, "hold", hold.hold_id))
    for expires_at, _, what, ident in sorted(due):
        if what == "bucket":
            _expire_bucket(tape, ident, expires_at)
        else:
            _expire_hold(tape, ident, expires_at)


def _expire_bucket(tape: Tape, grant_id: str, at: datetime) -> None:
    bucket = tape.bucket(grant_id)
    assert bucket is not None and bucket.remaining > 0
    tape.entry(
        delta=-bucket.remaining,
        reason=EntryReason.EXPIRY,
        source=f"expiry:{grant_id}",
        occurred_at=at,
        bucket=bucket,
    )
    tape.alert(AlertKind.GRANT_EXPIRED, at, {"grant_id": grant_id, "expired": bucket.remaining})


def _expire_hold(tape: Tape, hold_id: str, at: datetime) -> None:
    hold = next(h for h in tape.state.holds if h.hold_id == hold_id)
    tape.entry(
        delta=0,
        reason=EntryReason.RELEASE,
        source=f"hold:{hold_id}",
        occurred_at=at,
        metadata={"hold_id": hold_id, "reason": "expired", "amount": hold.amount},
        reserved_delta=-hold.amount,
    )
