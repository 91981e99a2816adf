"""The balance projection: fold each account's run of the batch into its locked view. The views
are the checkpoint rows: `checkpoints.save` writes them back (projections/checkpoints.py)."""

from __future__ import annotations

from projections.balance.apply import apply_all
from projections.checkpoints import Locked
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import DbConnection

NAME = "balance"


async def apply_batch(conn: DbConnection, locked: Locked) -> None:
    runs: dict[str, list[LedgerEntryMessage]] = {}
    for entry in locked.fresh:
        run = runs.get(entry.account_id)
        if run is None:
            runs[entry.account_id] = [entry]
        else:
            run.append(entry)
    views = locked.views
    for account_id, run in runs.items():
        views[account_id] = apply_all(views[account_id], run)
