"""Day activity from ledger entries. Pure.

Rules (issue 12: one count of a call): a charged call, a capture with a request_id included,
counts one scan on the UTC day it happened, at its first consume entry (a call spanning buckets,
the pot and an owed part writes several, all with its source, one after another); every consume
entry's credits count, the owed part's too. A call that charged nothing (a free call writes no
entry; the 0-delta consumes of ledgers written before issue 12 charged nothing) is no scan. A
refund lowers `credits` and raises `refunds` on the call's own day, and the refund that leaves
nothing refundable takes the scan back. So a 4xx/5xx call (consumed, then refunded in full)
nets to zero scans and zero credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from schemas.ledger import LedgerEntryMessage

DayKey = tuple[str, date]  # (account_id, UTC day)


@dataclass
class DayActivity:
    scans: int = 0
    credits: int = 0
    refunds: int = 0


def apply(
    days: dict[DayKey, DayActivity], last_source: str | None, entry: LedgerEntryMessage
) -> str | None:
    """Add the entry's effect to `days` (deltas); return the source to remember as last."""
    if entry.reason == "consume":
        activity = days.setdefault((entry.account_id, _day(entry.occurred_at)), DayActivity())
        if entry.source != last_source and entry.delta < 0:
            activity.scans += 1
        activity.credits -= entry.delta
    elif entry.reason == "refund" and entry.source.startswith("refund:"):
        consumed_at = entry.metadata.get("consumed_at")
        when = datetime.fromisoformat(consumed_at) if isinstance(consumed_at, str) else None
        activity = days.setdefault(
            (entry.account_id, _day(when or entry.occurred_at)), DayActivity()
        )
        activity.credits -= entry.delta
        activity.refunds += entry.delta
        if entry.metadata.get("refundable_after") == 0:
            activity.scans -= 1
    return entry.source


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
