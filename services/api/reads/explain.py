"""The explain read: the account's ledger as it stood at an instant, read as the customer,
turned back into the core's entries and explained by services/core/explain.py.

Which entries count at `as_of` on which clock is services/history/as_of.py's choice
(`entries_as_of`, the one `creditledger balance --as-of --by` folds), so the explanation and the
point-in-time balance speak of the same entries. Without `as_of`, by ledger time, every entry
counts (the ledger as it stands: no clock of ours cuts off one just recorded) and the instant
explained is now.

The ledger's entries become the core's through services/history/core_entries.py (`CoreEntries`,
shared with the point-in-time balance, which applies the same due rules at the same instant).
The ledger does not carry a hold's expiry, so holds are not rebuilt (explain does not explain
`reserved`).
"""

from __future__ import annotations

from datetime import datetime

from services.core.explain import RECENT_CONSUMES, ExplainFold, Explanation
from services.history.as_of import TimeAxis, cut_at, entries_as_of
from services.history.core_entries import CoreEntries
from services.platform.postgres import DbConnection

__all__ = ["CoreEntries", "explain_at"]


async def explain_at(
    conn: DbConnection,
    account_id: str,
    as_of: datetime | None,
    by: TimeAxis,
    now: datetime,
    recent: int = RECENT_CONSUMES,
) -> Explanation:
    """The explanation at `as_of` (None: now) on the `by` clock, on a connection reading as the
    customer (`freshness.fresh_read`)."""
    chosen = cut_at(as_of, by, now)
    fold, core = ExplainFold(account_id, recent), CoreEntries()
    async for message in entries_as_of(conn, account_id, chosen, by):
        fold.add(core.of(message))
    return fold.finish(as_of or now)
