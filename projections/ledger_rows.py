"""Ledger table rows as the ledger topic's messages, so a fold over the table (audit, rebuild)
uses the very apply functions the projector uses on the topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from schemas.ledger import EntryBucket, LedgerEntryMessage
from services.platform.postgres import DbConnection

PAGE_ROWS = 5000
LEDGER_PAGE = """
SELECT * FROM ledger_entries WHERE (account_id, seq) > ($1, $2)
ORDER BY account_id, seq LIMIT $3
"""


def entry_from_row(row: asyncpg.Record) -> LedgerEntryMessage:
    bucket = None
    if row["bucket_grant_id"] is not None:
        terms = row["bucket_terms"] or {}
        bucket = EntryBucket(
            grant_id=row["bucket_grant_id"],
            kind=row["bucket_kind"],
            expires_at=row["bucket_expires_at"],
            effective_at=_time(terms.get("effective_at")),
            priority=terms.get("priority"),
            applies_to=terms.get("applies_to"),
        )
    return LedgerEntryMessage(
        id=str(row["entry_id"]),
        account_id=row["account_id"],
        seq=row["seq"],
        delta=row["delta"],
        balance_after=row["balance_after"],
        reason=row["reason"],
        source=row["source"],
        bucket=bucket,
        metadata=row["metadata"],
        reserved_delta=row["reserved_delta"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
    )


async def ledger_by_account(
    db: DbConnection | asyncpg.Pool, page_rows: int = PAGE_ROWS, after_account: str = ""
) -> AsyncIterator[tuple[str, list[LedgerEntryMessage]]]:
    """Each account's entries in seq order (an account's entries are held at once)."""
    after: tuple[str, int] = (after_account, 2**62)  # past every seq of `after_account`
    current: list[LedgerEntryMessage] = []
    while True:
        rows = await db.fetch(LEDGER_PAGE, after[0], after[1], page_rows)
        for row in rows:
            entry = entry_from_row(row)
            if current and current[0].account_id != entry.account_id:
                yield current[0].account_id, current
                current = []
            current.append(entry)
        if len(rows) < page_rows:
            break
        after = (rows[-1]["account_id"], rows[-1]["seq"])
    if current:
        yield current[0].account_id, current


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
