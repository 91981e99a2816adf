"""How far the read models trail the ledger: what `projections status` (and later /readyz and
/metrics) report. Every live model shares one checkpoint per account (projections/checkpoints.py),
so one scan of them answers for all three. Endpoint usage is not among them: the writer writes
it in the transaction that writes the entries, so it never trails the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from services.platform.postgres import DbConnection

# Accounts whose writer seq is ahead of the checkpoint, and the entry just past the checkpoint,
# whose age is how stale that account's read is.
LAG = """
SELECT count(*) AS accounts_behind,
       coalesce(max(w.seq - coalesce(m.last_seq, 0)), 0) AS entries_behind_max,
       coalesce(sum(w.seq - coalesce(m.last_seq, 0)), 0)::bigint AS entries_behind,
       now() - min(e.recorded_at) AS oldest_unapplied_age
FROM writer_accounts w
LEFT JOIN balance_view m ON m.account_id = w.account_id
LEFT JOIN ledger_entries e ON e.account_id = w.account_id AND e.seq = coalesce(m.last_seq, 0) + 1
WHERE w.seq > coalesce(m.last_seq, 0)
"""
MODELS = ("balance", "activity", "grants")


@dataclass(frozen=True)
class Lag:
    projection: str
    accounts_behind: int
    entries_behind: int
    entries_behind_max: int
    oldest_unapplied_ms: float  # 0 when caught up: how stale the stalest account is

    def to_json(self) -> dict[str, object]:
        return {
            "projection": self.projection, "accountsBehind": self.accounts_behind,
            "entriesBehind": self.entries_behind, "entriesBehindMax": self.entries_behind_max,
            "oldestUnappliedMs": round(self.oldest_unapplied_ms, 1),
        }  # fmt: skip


async def projection_lag(db: DbConnection | asyncpg.Pool) -> list[Lag]:
    row = await db.fetchrow(LAG)
    return [_lag(name, row) for name in MODELS]


def _lag(name: str, row: asyncpg.Record | None) -> Lag:
    assert row is not None
    age: timedelta | None = row["oldest_unapplied_age"]
    return Lag(
        projection=name,
        accounts_behind=row["accounts_behind"],
        entries_behind=row["entries_behind"],
        entries_behind_max=row["entries_behind_max"],
        oldest_unapplied_ms=age.total_seconds() * 1000 if age else 0.0,
    )
