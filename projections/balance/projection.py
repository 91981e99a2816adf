"""The balance projection: lock the batch's views, fold its entries, save (one transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from projections.balance import store
from projections.balance.apply import apply_all
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import DbConnection

NAME = "balance"


async def apply_batch(conn: DbConnection, entries: Sequence[LedgerEntryMessage]) -> None:
    runs: dict[str, list[LedgerEntryMessage]] = {}
    for entry in entries:
        runs.setdefault(entry.account_id, []).append(entry)
    views = await store.lock_views(conn, runs)
    for account_id, run in runs.items():
        views[account_id] = apply_all(views[account_id], run)
    await store.save_views(conn, list(views.values()))
