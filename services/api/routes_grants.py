"""Customer reads: the account's grants (buckets, priority, schedule, remaining), optionally with
their latest ledger entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from services.api.models import TYPED
from services.api.models.reads import GrantRead, GrantsPage
from services.api.problems import Problem
from services.api.read_params import (
    CursorParam,
    CustomerDep,
    TimeParam,
    read_responses,
    seq_cursor,
)
from services.api.reads import grants, ledger
from services.api.reads.common import (
    ObjectId,
    decode_cursor,
    encode_cursor,
    iso,
    parse_instant,
)
from services.api.reads.freshness import (
    GRANTS,
    MinSeq,
    fresh_read,
)
from services.platform.postgres import DbConnection

router = APIRouter(tags=["credits"])


@router.get(
    "/v1/credits/grants",
    response_model=GrantsPage,
    operation_id="listGrants",
    summary="The account's grants: bucket, priority, schedule, remaining",
    responses=read_responses(400),
    **TYPED,
)
async def list_grants(
    request: Request,
    response: Response,
    caller: CustomerDep,
    covering_date: TimeParam = None,
    starting_at: TimeParam = None,
    effective_before: TimeParam = None,
    include_ledgers: bool = False,
    include_balance: bool = False,
    include_archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=grants.MAX_LIMIT)] = grants.DEFAULT_LIMIT,
    next_page: CursorParam = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    covering = parse_instant(covering_date, "covering_date")
    starting = parse_instant(starting_at, "starting_at")
    before = parse_instant(effective_before, "effective_before")
    filters = {"covering_date": iso(covering), "starting_at": iso(starting),
               "effective_before": iso(before), "include_archived": include_archived}  # fmt: skip
    after_seq: int | None = None
    if next_page is not None:
        after_seq = seq_cursor(decode_cursor(next_page, "next_page", filters)).key
    async with fresh_read(request, GRANTS, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            grants.GRANTS_PAGE, caller.account_id, covering, starting, before, include_archived,
            after_seq, datetime.now(UTC), None, limit + 1,
        )  # fmt: skip
        has_more = len(rows) > limit
        rows = rows[:limit]
        data = await _render_grants(conn, caller.account_id, rows, include_ledgers, include_balance)
    fresh.stamp(response)
    token = encode_cursor(rows[-1]["granted_seq"], 1, filters) if has_more else None
    return {"data": data, "limit": limit, "nextPage": token, "ledgerSeq": fresh.seq}


@router.get(
    "/v1/credits/grants/{grant_id}",
    response_model=GrantRead,
    operation_id="getGrant",
    summary="One grant",
    responses=read_responses(404),
    **TYPED,
)
async def get_grant(
    grant_id: ObjectId,
    request: Request,
    response: Response,
    caller: CustomerDep,
    include_ledgers: bool = False,
    include_balance: bool = False,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    async with fresh_read(request, GRANTS, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            grants.GRANTS_PAGE, caller.account_id, None, None, None, True, None,
            datetime.now(UTC), grant_id, 1,
        )  # fmt: skip
        if not rows:
            raise Problem(404, "not-found", "no such grant")
        data = await _render_grants(conn, caller.account_id, rows, include_ledgers, include_balance)
    fresh.stamp(response)
    return {**data[0], "ledgerSeq": fresh.seq}


async def _render_grants(
    conn: DbConnection,
    account_id: str,
    rows: list[asyncpg.Record],
    with_ledgers: bool,
    with_balance: bool,
) -> list[dict[str, Any]]:
    data = [grants.grant_json(r) for r in rows]
    if with_balance:
        for item in data:
            item["balance"] = item["remaining"]
    if with_ledgers and data:
        entries: dict[str, list[dict[str, Any]]] = {item["id"]: [] for item in data}
        for row in await conn.fetch(
            ledger.GRANT_ENTRIES, account_id, list(entries), grants.LEDGER_PER_GRANT
        ):
            entries[row["bucket_grant_id"]].append(ledger.entry_json(row))
        for item in data:
            item["ledger"] = entries[item["id"]][: grants.LEDGER_PER_GRANT]
            item["ledgerHasMore"] = len(entries[item["id"]]) > grants.LEDGER_PER_GRANT
    return data
