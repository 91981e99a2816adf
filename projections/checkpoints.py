"""One checkpoint per account for every live model: the account's `balance_view` row.

Every model of the projector commits in the partition batch's one transaction, so one mark says
how far all of them are: `last_seq`, and `last_source` (the source of the entry at `last_seq`:
activity counts a call once, at its first entry, and a call's entries may span two batches).
`lock` locks the batch's view rows once (creating the missing ones), keeps only the entries
above each mark (the outbox is at-least-once: redelivery changes nothing), refuses a gap
(`LedgerGap`); the models fold `fresh`, the balance model into `views`; `save` writes the views
and the marks back in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from projections.balance import store
from projections.balance.apply import BalanceView
from schemas.ledger import LedgerEntryMessage
from services.core.errors import LedgerGap
from services.platform.postgres import DbConnection


@dataclass
class Locked:
    """A batch's accounts, locked: what each model folds, and the views `save` writes."""

    fresh: list[LedgerEntryMessage]  # the entries above the checkpoints, in the batch's order
    views: dict[str, BalanceView]  # per account; the balance model replaces them
    sources: dict[str, str | None]  # per account, `last_source` as locked (before the batch)


async def lock(conn: DbConnection, entries: Sequence[LedgerEntryMessage]) -> Locked:
    rows = await store.lock_views(conn, {e.account_id for e in entries})
    seqs = {account: view.last_seq for account, (view, _) in rows.items()}
    fresh: list[LedgerEntryMessage] = []
    for entry in entries:
        last_seq = seqs[entry.account_id]
        if entry.seq <= last_seq:
            continue
        if entry.seq != last_seq + 1:
            raise LedgerGap(f"gap before {entry.account_id}/{entry.seq}: checkpoint {last_seq}")
        seqs[entry.account_id] = entry.seq
        fresh.append(entry)
    views = {account: view for account, (view, _) in rows.items()}
    sources = {account: source for account, (_, source) in rows.items()}
    return Locked(fresh, views, sources)


async def save(conn: DbConnection, locked: Locked) -> None:
    """Writes the views of the accounts with fresh entries, each with its new `last_source`."""
    last_sources = {e.account_id: e.source for e in locked.fresh}  # the last one wins
    views = [locked.views[account] for account in sorted(last_sources)]
    last_seqs = {e.account_id: e.seq for e in locked.fresh}
    assert all(v.last_seq == last_seqs[v.account_id] for v in views), "views not folded"
    await store.save_views(conn, views, [last_sources[v.account_id] for v in views])
