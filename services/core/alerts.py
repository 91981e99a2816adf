"""Balance alerts after each command: once per crossing (see `evolve._rearm`), and auto-reload
requests capped per UTC day of event time."""

from __future__ import annotations

from datetime import datetime

from services.core.model import AlertKind
from services.core.tape import Tape


def raise_crossings(tape: Tape, at: datetime) -> None:
    state = tape.state
    settings, flags, available = state.settings, state.flags, state.available
    low_line = settings.low_balance_threshold
    if low_line is not None and available < low_line and not flags.low_balance:
        tape.alert(AlertKind.LOW_BALANCE, at, {"threshold": low_line})
    if available <= 0 and not flags.depleted:
        tape.alert(AlertKind.DEPLETED, at)
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
