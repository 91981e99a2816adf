"""`creditledger projections rebuild`: every read model folded afresh from the ledger into shadow
tables while the live ones keep serving, then swapped in atomically. Resumable.

1. Start: note the projector's stored Kafka offsets (O), create empty shadow tables.
2. Fold the ledger account by account with the projector's own pure apply functions; each chunk
   of accounts is written to the shadows together with the last account folded, so a rebuild
   that dies resumes where it stopped (with the same O).
3. Swap, in one transaction: the shadows replace the live tables (readers wait for the renames,
   then read the new rows; they never see an empty model), the ledger-derived `credits` of
   `endpoint_usage` are replaced in place (its traffic columns are the writer's, not the
   ledger's), and the projector's offsets go back to O.
Why the rewind is enough: an entry the fold missed was committed after O was noted, so the outbox
published it after O: the projector reads it again from O, and entries the fold already holds are
at or below the new checkpoints, which makes them no-ops.
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

SWAPPED = ("balance_view", "activity_days", "grants_view", "projection_checkpoints")
CHECKPOINTED = ("activity", "usage", "grants")
CHUNK_ACCOUNTS = 500
STATE = """
CREATE TABLE IF NOT EXISTS projection_rebuild (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    projector_offsets jsonb  NOT NULL,
    last_account     text    NOT NULL DEFAULT '',
    accounts         bigint  NOT NULL DEFAULT 0,
    entries          bigint  NOT NULL DEFAULT 0
)"""
CREDITS_SHADOW = """
CREATE TABLE endpoint_credits_rebuild (
    account_id text NOT NULL, endpoint text NOT NULL, day date NOT NULL,
    credits bigint NOT NULL, PRIMARY KEY (account_id, endpoint, day)
)"""
REWIND = """
UPDATE kafka_offsets o SET next_offset = LEAST(o.next_offset, (s.value)::bigint)
FROM jsonb_each_text($2::jsonb) AS s(key, value)
WHERE o.consumer = $1 AND o.topic || ':' || o.kafka_partition = s.key
"""


@dataclass
class Folded:
    views: list[balance.BalanceView] = field(default_factory=list)
    days: dict[activity.DayKey, activity.DayActivity] = field(default_factory=dict)
    credits: dict[usage.UsageKey, int] = field(default_factory=dict)
    grants: dict[grants.GrantKey, grants.GrantRow] = field(default_factory=dict)
    checkpoints: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    last_account: str = ""
    accounts: int = 0
    entries: int = 0


@dataclass
class RebuildReport:
    accounts: int
    entries: int
    seconds: float
    resumed_from: str

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int], None]


async def rebuild(
    pool: asyncpg.Pool,
    projector_group: str,
    progress: Progress = lambda accounts, entries: None,
    chunk_accounts: int = CHUNK_ACCOUNTS,
    stop_after_chunks: int | None = None,  # for tests of resumption: fold this many, then stop
) -> RebuildReport | None:
    """Rebuild and swap; None when stopped early by `stop_after_chunks` (resumable)."""
    started = time.monotonic()
    resumed_from = await _start(pool, projector_group)
    done = Folded(last_account=resumed_from)
    chunk = Folded(last_account=resumed_from)
    chunks = 0
    async for account_id, entries in ledger_by_account(pool, after_account=resumed_from):
        _fold_account(chunk, account_id, entries)
        if chunk.accounts >= chunk_accounts:
            await _write_chunk(pool, chunk)
            done.accounts, done.entries = (
                done.accounts + chunk.accounts,
                done.entries + chunk.entries,
            )
            progress(done.accounts, done.entries)
            chunk, chunks = Folded(last_account=account_id), chunks + 1
            if stop_after_chunks is not None and chunks >= stop_after_chunks:
                return None
    await _write_chunk(pool, chunk)
    done.accounts, done.entries = done.accounts + chunk.accounts, done.entries + chunk.entries
    progress(done.accounts, done.entries)
    await _swap(pool, projector_group)
    return RebuildReport(done.accounts, done.entries, time.monotonic() - started, resumed_from)


async def _start(pool: asyncpg.Pool, projector_group: str) -> str:
    """Resume a rebuild in progress, or begin one; returns the last account already folded."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(STATE)
        row = await conn.fetchrow("SELECT last_account FROM projection_rebuild")
        if row is not None:
            return str(row["last_account"])
        offsets = {
            f"{r['topic']}:{r['kafka_partition']}": r["next_offset"]
            for r in await conn.fetch(
                "SELECT * FROM kafka_offsets WHERE consumer = $1", projector_group
            )
        }
        for table in SWAPPED:
            await conn.execute(f"DROP TABLE IF EXISTS {table}_rebuild")
            await conn.execute(f"CREATE TABLE {table}_rebuild (LIKE {table} INCLUDING ALL)")
        await conn.execute("DROP TABLE IF EXISTS endpoint_credits_rebuild")
        await conn.execute(CREDITS_SHADOW)
        await conn.execute(
            "INSERT INTO projection_rebuild (projector_offsets) VALUES ($1)", offsets
        )
        return ""


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
    folded.last_account = account_id
    folded.accounts += 1
    folded.entries += len(entries)


async def _write_chunk(pool: asyncpg.Pool, folded: Folded) -> None:
    if folded.accounts == 0:
        return
    async with pool.acquire() as conn, conn.transaction():
        await _copy(conn, folded)
        await conn.execute(
            """UPDATE projection_rebuild SET last_account = $1,
                   accounts = accounts + $2, entries = entries + $3""",
            folded.last_account, folded.accounts, folded.entries,
        )  # fmt: skip


async def _copy(conn: DbConnection, folded: Folded) -> None:
    await conn.copy_records_to_table(
        "balance_view_rebuild",
        records=[
            (v.account_id, v.last_seq, v.balance, v.reserved, v.granted_total, v.consumed_total,
             grants_json(v), v.last_updated)
            for v in folded.views
        ],
        columns=("account_id", "last_seq", "balance", "reserved", "granted_total",
                 "consumed_total", "grants", "last_updated"),
    )  # fmt: skip
    await conn.copy_records_to_table(
        "activity_days_rebuild",
        records=[(a, d, x.scans, x.credits, x.refunds) for (a, d), x in folded.days.items()],
        columns=("account_id", "day", "scans", "credits", "refunds"),
    )
    await conn.copy_records_to_table(
        "endpoint_credits_rebuild",
        records=[(a, e, d, c) for (a, e, d), c in folded.credits.items()],
        columns=("account_id", "endpoint", "day", "credits"),
    )
    await conn.copy_records_to_table(
        "grants_view_rebuild",
        records=[
            (a, g, *(_grant_value(row, c) for c in GRANT_COLUMNS))
            for (a, g), row in folded.grants.items()
        ],
        columns=("account_id", "grant_id", *GRANT_COLUMNS),
    )
    await conn.copy_records_to_table(
        "projection_checkpoints_rebuild",
        records=folded.checkpoints,
        columns=("account_id", "projection", "last_seq", "last_source"),
    )


async def _swap(pool: asyncpg.Pool, projector_group: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        offsets = await conn.fetchval("SELECT projector_offsets FROM projection_rebuild")
        await conn.execute(
            f"LOCK TABLE {', '.join(SWAPPED)}, endpoint_usage IN ACCESS EXCLUSIVE MODE"
        )
        for table in SWAPPED:
            await conn.execute(f"ALTER TABLE {table} RENAME TO {table}_replaced")
            await conn.execute(f"ALTER TABLE {table}_rebuild RENAME TO {table}")
            await conn.execute(f"DROP TABLE {table}_replaced")
        await conn.execute("UPDATE endpoint_usage SET credits = 0 WHERE credits <> 0")
        await conn.execute(
            """INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
               SELECT account_id, endpoint, day, credits FROM endpoint_credits_rebuild
               ON CONFLICT (account_id, endpoint, day) DO UPDATE SET credits = EXCLUDED.credits"""
        )
        await conn.execute("DROP TABLE endpoint_credits_rebuild")
        await conn.execute(REWIND, projector_group, offsets)  # the jsonb codec encodes it
        await conn.execute("DROP TABLE projection_rebuild")


def _grant_value(row: grants.GrantRow, column: str) -> object:
    value = getattr(row, column)
    if column == "applies_to" and value is not None:
        return list(value)  # jsonb column: the connection's codec encodes it
    return value
