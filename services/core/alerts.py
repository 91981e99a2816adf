"""Balance alerts after each command: once per crossing (see `evolve._rearm`), and auto-reload
requests capped per UTC day of event time. `overage`: from nothing owed to something owed;
`credit_limit_exceeded`: out of the credit limit (drawdown.within_limit, what `/check` uses).
`grant_expiring`: once per grant, `grant_expiring_notice_s` before a grant with credit left
expires (`notice_expiring`)."""

from __future__ import annotations

from datetime import datetime

from services.core.drawdown import within_limit
from services.core.model import AlertKind, MetadataValue
from services.core.tape import Tape


def raise_crossings(tape: Tape, at: datetime) -> None:
    state = tape.state
    settings, flags, available = state.settings, state.flags, state.available
    low_line = settings.low_balance_threshold
    if low_line is not None and available < low_line and not flags.low_balance:
        tape.alert(AlertKind.LOW_BALANCE, at, {"threshold": low_line})
    if available <= 0 and not flags.depleted:
        tape.alert(AlertKind.DEPLETED, at)
    if state.overage > 0 and not flags.overage:
        tape.alert(AlertKind.OVERAGE, at, {"overage": state.overage})
    limit = settings.credit_limit
    if not within_limit(available, state.overage, limit) and not flags.over_limit:
        details: dict[str, MetadataValue] = {"credit_limit": limit, "overage": state.overage}
        tape.alert(AlertKind.CREDIT_LIMIT_EXCEEDED, at, details)
    reload = settings.auto_reload
    if reload is not None and available < reload.threshold and not flags.auto_reload:
        same_day = flags.auto_reload_day == at.date()
        used_today = flags.auto_reloads_that_day if same_day else 0
        if used_today < reload.max_per_day:
            tape.alert(
                AlertKind.AUTO_RELOAD_REQUESTED,
                at,
                {"amount": reload.amount, "threshold": reload.threshold},
            )


def notice_expiring(tape: Tape, at: datetime) -> None:
    """After every command: each bucket with credit left whose notice instant (`Bucket.notice_at`)
    is at or before `at` and that has not expired by then gets its one `grant_expiring` alert.
    The scheduler sends `expire` at the notice instant (`AccountState.next_due_at`), so a quiet
    account is noticed on time; a grant made inside the window is noticed by its own command."""
    notice_s = tape.state.settings.grant_expiring_notice_s
    for bucket in tape.state.buckets:
        notice_at = bucket.notice_at(notice_s)
        if notice_at is None or notice_at > at or bucket.remaining <= 0:
            continue
        assert bucket.expires_at is not None
        if bucket.expired_at(at):
            continue  # expire_due closes it at its instant: `grant_expired` says it instead
        details: dict[str, MetadataValue] = {
            "grant_id": bucket.grant_id,
            "expires_at": bucket.expires_at.isoformat(),
            "remaining": bucket.remaining,
            "kind": bucket.kind.value,
        }
        tape.alert(AlertKind.GRANT_EXPIRING, at, details)
