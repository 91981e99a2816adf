"""Per-account checkpoints of the models kept in several rows (activity, usage, grants).

`fresh_entries` locks the batch's checkpoint rows, keeps only entries above them (redelivery is
harmless), refuses a gap (`LedgerGap`), and returns what to save after the model is updated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.ledger import LedgerEntryMessage
from services.core.errors import LedgerGap
from services.platform.postgres import DbConnection

# Lock first, create only the missing rows (an INSERT .. ON CONFLICT over every account of every
# batch doubled the lock's cost).
LOCK_CHECKPOINTS = """
SELECT account_id, last_seq, last_source FROM projection_checkpoints
WHERE projection = $2 AND account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE
"""
CREATE_CHECKPOINTS = """
INSERT INTO projection_checkpoints (account_id, projection)
SELECT unnest($1::text[]), $2 ORDER BY 1
ON CONFLICT DO NOTHING
"""
SAVE_CHECKPOINTS = """
UPDATE projection_checkpoints c SET last_seq = s.last_seq, last_source = s.last_source
FROM unnest($1::text[], $2::bigint[], $3::text[]) AS s(account_id, last_seq, last_source)
WHERE c.projection = $4 AND c.account_id = s.account_id
"""


@dataclass
class Checkpoint:
    last_seq: int
    last_source: str | None


async def fresh_entries(
    conn: DbConnection, projection: str, entries: Sequence[LedgerEntryMessage]
) -> tuple[list[LedgerEntryMessage], dict[str, Checkpoint]]:
    accounts = sorted({e.account_id for e in entries})
    rows = await conn.fetch(LOCK_CHECKPOINTS, accounts, projection)
    if len(rows) < len(accounts):
        await conn.execute(CREATE_CHECKPOINTS, accounts, projection)
        rows = await conn.fetch(LOCK_CHECKPOINTS, accounts, projection)
    marks = {r["account_id"]: Checkpoint(r["last_seq"], r["last_source"]) for r in rows}
    assert len(marks) == len(accounts)
    fresh: list[LedgerEntryMessage] = []
    for entry in entries:
        mark = marks[entry.account_id]
        if entry.seq <= mark.last_seq:
            continue
        if entry.seq != mark.last_seq + 1:
            raise LedgerGap(f"{projection}: gap before {entry.account_id}/{entry.seq}")
        fresh.append(entry)
        mark.last_seq = entry.seq  # advanced here; saved by save_checkpoints
    return fresh, marks


async def save_checkpoints(
    conn: DbConnection, projection: str, marks: dict[str, Checkpoint]
) -> None:
    accounts = sorted(marks)
    await conn.execute(
        SAVE_CHECKPOINTS, accounts, [marks[a].last_seq for a in accounts],
        [marks[a].last_source for a in accounts], projection,
    )  # fmt: skip
