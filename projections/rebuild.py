"""`creditledger projections rebuild`: every read model folded afresh from the ledger table.

One transaction: it takes the models' tables in EXCLUSIVE mode (readers go on reading the old
rows; the projector waits), empties them, folds the ledger with the projector's own pure apply
functions account by account, COPYs the results and the checkpoints in, and commits. Readers
switch from the old rows to the new at the commit, so service has no gap; the projector then
resumes, skipping what the rebuild already folded (entries at or below the new checkpoints).

Not resumable yet: an interrupted rebuild rolls back whole and leaves the old models serving.
The endpoint traffic columns are not ledger-derived (free calls write no entry): they are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from projections.activity import apply as activity
from projections.balance import apply as balance
from projections.balance.store import grants_json
from projections.grants import apply as grants
from projections.grants.projection import COLUMNS as GRANT_COLUMNS
from projections.ledger_rows import ledger_by_account
from projections.usage import apply as usage
from schemas.ledger import LedgerEntryMessage
from services.platform.postgres import DbConnection

MODEL_TABLES = ("balance_view", "activity_days", "grants_view", "projection_checkpoints")
CHECKPOINTED = ("activity", "usage", "grants")


@dataclass
class Folded:
    views: list[balance.BalanceView] = field(default_factory=list)
    days: dict[activity.DayKey, activity.DayActivity] = field(default_factory=dict)
    credits: dict[usage.UsageKey, int] = field(default_factory=dict)
    grants: dict[grants.GrantKey, grants.GrantRow] = field(default_factory=dict)
    checkpoints: list[tuple[str, str, int, str | None]] = field(default_factory=list)


@dataclass
class RebuildReport:
    accounts: int
    entries: int
    seconds: float

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    pool: asyncpg.Pool, progress: Callable[[int, int], None] = lambda accounts, entries: None
) -> RebuildReport:
    started = time.monotonic()
    folded, accounts, entries = Folded(), 0, 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            f"LOCK TABLE {', '.join(MODEL_TABLES)}, endpoint_usage IN EXCLUSIVE MODE"
        )
        async for account_id, account_entries in ledger_by_account(conn):
            _fold_account(folded, account_id, account_entries)
            accounts, entries = accounts + 1, entries + len(account_entries)
            progress(accounts, entries)
        await _replace(conn, folded)
    return RebuildReport(accounts, entries, time.monotonic() - started)


def _fold_account(folded: Folded, account_id: str, entries: list[LedgerEntryMessage]) -> None:
    view = balance.BalanceView(account_id)
    last_source: str | None = None
    for entry in entries:
        view = balance.apply(view, entry)
        last_source = activity.apply(folded.days, last_source, entry)
        usage.apply(folded.credits, entry)
        grants.apply(folded.grants, entry)
    folded.views.append(view)
    last = entries[-1]
    folded.checkpoints += [(account_id, name, last.seq, last.source) for name in CHECKPOINTED]


async def _replace(conn: DbConnection, folded: Folded) -> None:
    for table in MODEL_TABLES:
        await conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
    await conn.execute("UPDATE endpoint_usage SET credits = 0")
    await conn.copy_records_to_table(
        "balance_view",
        records=[
            (v.account_id, v.last_seq, v.balance, v.reserved, v.granted_total, v.consumed_total,
             grants_json(v), v.last_updated)
            for v in folded.views
        ],
        columns=("account_id", "last_seq", "balance", "reserved", "granted_total",
                 "consumed_total", "grants", "last_updated"),
    )  # fmt: skip
    await conn.copy_records_to_table(
        "activity_days",
        records=[(a, d, x.scans, x.credits, x.refunds) for (a, d), x in folded.days.items()],
        columns=("account_id", "day", "scans", "credits", "refunds"),
    )
    keys = sorted(folded.credits)
    await conn.execute(
        """INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
           ON CONFLICT (account_id, endpoint, day) DO UPDATE SET credits = EXCLUDED.credits""",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        [folded.credits[k] for k in keys],
    )  # fmt: skip
    await conn.copy_records_to_table(
        "grants_view",
        records=[
            (a, g, *(_grant_value(row, c) for c in GRANT_COLUMNS))
            for (a, g), row in folded.grants.items()
        ],
        columns=("account_id", "grant_id", *GRANT_COLUMNS),
    )
    await conn.copy_records_to_table(
        "projection_checkpoints",
        records=folded.checkpoints,
        columns=("account_id", "projection", "last_seq", "last_source"),
    )


def _grant_value(row: grants.GrantRow, column: str) -> object:
    value = getattr(row, column)
    if column == "applies_to" and value is not None:
        return list(value)  # jsonb column: the connection's codec encodes it
    return value
