"""How fresh a read is, and `min_seq`: read-your-writes against an eventually consistent model.

Every read answers with `X-Ledger-Seq` (and `ledgerSeq` in its body): the account's last ledger
seq the model it read reflects. A client that knows a seq (from the ledger topic, a ledger read,
an earlier answer) passes `min_seq`; the read then waits, polling every `POLL_INTERVAL_S`, until
the model's checkpoint for the caller's account reaches it, for at most
`settings.api_read_wait_max_ms`. Past that it answers anyway, 200 with what it has, its seq in
`X-Ledger-Seq` and `X-Ledger-Stale: true` (a slow projector degrades freshness, never
availability). The seq and the data come from one repeatable-read snapshot, so they agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Query, Request, Response

from services.platform.postgres import DbConnection
from services.platform.settings import Settings

POLL_INTERVAL_S = 0.05
# For the rest of the transaction: the API's reader role, and the one account its rows may
# belong to (schemas/migrations/0004_rls.sql). Both reset at commit or rollback.
AS_CUSTOMER = """
SELECT set_config('creditledger.account_id', $1, true), set_config('role', 'creditledger_api', true)
"""
MAX_SEQ = 2**62


@dataclass(frozen=True)
class ReadModel:
    """A model a read answers from, and the SQL giving its checkpoint for account `$1`."""

    name: str
    seq_sql: str


# Balance and check read the writer's own state (reads/balance.py): fresh at the writer's commit.
BALANCE_SEQ = "SELECT coalesce((SELECT seq FROM writer_accounts WHERE account_id = $1), 0)"
LEDGER_SEQ = "SELECT coalesce(max(seq), 0) FROM ledger_entries WHERE account_id = $1"
# Every projected model shares one checkpoint per account (projections/checkpoints.py).
PROJECTED_SEQ = "SELECT coalesce((SELECT last_seq FROM balance_view WHERE account_id = $1), 0)"
ACTIVITY_SEQ = GRANTS_SEQ = PROJECTED_SEQ
# Usage (`endpoint_usage`) is the writer's too, written with the entries (migration 0020); the
# summary reads the writer's state and usage: both are fresh at the writer's commit.
USAGE_SEQ = SUMMARY_SEQ = BALANCE_SEQ

BALANCE = ReadModel("balance", BALANCE_SEQ)
LEDGER = ReadModel("ledger", LEDGER_SEQ)  # the ledger itself: fresh once the writer commits
ACTIVITY = ReadModel("activity", ACTIVITY_SEQ)
USAGE = ReadModel("usage", USAGE_SEQ)
GRANTS = ReadModel("grants", GRANTS_SEQ)
SUMMARY = ReadModel("summary", SUMMARY_SEQ)

MinSeq = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="wait (bounded) until the answer reflects this seq"),
]


@dataclass(frozen=True)
class Freshness:
    seq: int  # the account's last ledger seq the answer reflects
    stale: bool  # `min_seq` was asked for and not reached within the wait

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-Ledger-Seq": str(self.seq)}
        if self.stale:
            headers["X-Ledger-Stale"] = "true"
        return headers

    def stamp(self, response: Response) -> None:
        response.headers.update(self.headers)


async def wait_for_seq(
    pool: asyncpg.Pool, model: ReadModel, account_id: str, min_seq: int, wait_max_ms: int
) -> bool:
    """Poll the model's checkpoint until it reaches `min_seq`; False when the wait ran out."""
    deadline = time.monotonic() + wait_max_ms / 1000
    while True:
        if int(await pool.fetchval(model.seq_sql, account_id)) >= min_seq:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(POLL_INTERVAL_S, left))


async def wait_if_asked(
    request: Request, model: ReadModel, account_id: str, min_seq: int | None
) -> None:
    """Wait for `min_seq` (bounded) when one is asked for. Balance and check then read in one
    statement (reads/balance.py): their own row carries the checkpoint (the writer's `seq`)."""
    if min_seq is not None and min_seq > 0:
        settings: Settings = request.app.state.settings
        await wait_for_seq(
            request.app.state.pool, model, account_id, min_seq, settings.api_read_wait_max_ms
        )


@asynccontextmanager
async def fresh_read(
    request: Request, model: ReadModel, account_id: str, min_seq: int | None
) -> AsyncIterator[tuple[DbConnection, Freshness]]:
    """Wait for `min_seq` (bounded), then a read-only snapshot and the seq it reflects."""
    pool: asyncpg.Pool = request.app.state.pool
    await wait_if_asked(request, model, account_id, min_seq)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.fetchval(AS_CUSTOMER, account_id)  # row-level security: this account only
        seq = int(await conn.fetchval(model.seq_sql, account_id))
        yield conn, Freshness(seq, stale=min_seq is not None and seq < min_seq)
