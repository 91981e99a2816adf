"""The balance projection: lock the batch's views, fold its entries, save (one transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from projections.balance import store
from projections.balance.apply import apply
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import DbConnection

NAME = "balance"


async def apply_batch(conn: DbConnection, entries: Sequence[LedgerEntryMessage]) -> None:
    views = await store.lock_views(conn, (e.account_id for e in entries))
    for entry in entries:
        views[entry.account_id] = apply(views[entry.account_id], entry)
    await store.save_views(conn, list(views.values()))
