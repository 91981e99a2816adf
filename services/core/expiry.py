"""What event time makes due, before a command at time `t`: every scheduled grant whose
`effective_at` is at or before `t` becomes spendable (grants.activate), and every bucket and hold
that expired at or before `t` leaves, each at its own instant and in time order, so a replay of
the log decides the same."""

from __future__ import annotations

from datetime import datetime

from services.core.grants import activate
from services.core.model import AlertKind, EntryReason, MetadataValue
from services.core.tape import Tape

# At one instant: credit arrives before anything expires (a grant effective at the instant
# another one expires is spendable at that instant; the expiry leaves what the other had left).
_ACTIVATE, _EXPIRE_BUCKET, _EXPIRE_HOLD = 0, 1, 2


def expire_due(tape: Tape, at: datetime) -> None:
    due: list[tuple[datetime, int, int, str]] = []
    for bucket in tape.state.buckets:
        if bucket.scheduled and bucket.effective_at <= at:
            due.append((bucket.effective_at, _ACTIVATE, bucket.granted_seq, bucket.grant_id))
        if bucket.expires_at is not None and bucket.expires_at <= at:
            due.append((bucket.expires_at, _EXPIRE_BUCKET, bucket.granted_seq, bucket.grant_id))
    for order, hold in enumerate(tape.state.holds):
        if hold.expires_at <= at:
            due.append((hold.expires_at, _EXPIRE_HOLD, order, hold.hold_id))
    for when, what, _, ident in sorted(due):
        if what == _ACTIVATE:
            activate(tape, ident, when)
        elif what == _EXPIRE_BUCKET:
            _expire_bucket(tape, ident, when)
        else:
            _expire_hold(tape, ident, when)


def _expire_bucket(tape: Tape, grant_id: str, at: datetime) -> None:
    bucket = tape.bucket(grant_id)
    if bucket is None:
        return  # already closed (evolve drops an empty bucket past its expiry at any entry)
    # A spent bucket closes too (delta 0): a late refund of a call it paid for then comes back
    # unbucketed whether or not the bucket had credit left when it expired, and the grants view
    # shows it expired.
    tape.entry(
        delta=-bucket.remaining,
        reason=EntryReason.EXPIRY,
        source=f"expiry:{grant_id}",
        occurred_at=at,
        bucket=bucket,
    )
    if bucket.remaining > 0:
        details: dict[str, MetadataValue] = {"grant_id": grant_id, "expired": bucket.remaining}
        tape.alert(AlertKind.GRANT_EXPIRED, at, details)


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
