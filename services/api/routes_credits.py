"""Customer reads. Every query names the caller's account: another account's data is unreachable.

Every read answers `X-Ledger-Seq` (and `ledgerSeq`) and takes `min_seq`: see reads/freshness.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from schemas.common import MAX_CREDITS
from services.api.auth import Caller, customer
from services.api.problems import Problem, problem_responses
from services.api.reads import activity, grants, ledger, usage
from services.api.reads.balance import (
    balance_answer,
    balance_json,
    check_answer,
    read_state,
    read_state_as_customer,
)
from services.api.reads.balance_as_of import AsOfParam, ByParam, balance_as_of_response
from services.api.reads.common import (
    MAX_BIGINT,
    Cursor,
    ObjectId,
    day_range,
    decode_cursor,
    encode_cursor,
    iso,
    parse_instant,
)
from services.api.reads.freshness import (
    ACTIVITY,
    BALANCE,
    GRANTS,
    LEDGER,
    SUMMARY,
    USAGE,
    MinSeq,
    fresh_read,
    wait_if_asked,
)
from services.core.spend import figures
from services.platform.postgres import DbConnection

router = APIRouter(tags=["credits"])
CustomerDep = Annotated[Caller, Depends(customer)]
TimeParam = Annotated[str | None, Query(max_length=64)]
FromParam = Annotated[str | None, Query(alias="from", max_length=64)]
ToParam = Annotated[str | None, Query(alias="to", max_length=64)]
CursorParam = Annotated[str | None, Query(max_length=512)]
MAX_SKIP = 1_000_000  # page/offset beyond this: use the cursor
# What every customer read can answer besides 200; single objects add 404, paged lists 400.
READ_ERRORS = (401, 403, 422, 429)
FRESH_HEADERS = {
    "X-Ledger-Seq": {
        "description": "the account's last ledger seq this answer reflects",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-Ledger-Stale": {
        "description": "`true` when `min_seq` was not reached within the bounded wait",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
REMAINING_HEADER = {
    "X-Credits-Remaining": {
        "description": "the account's available credits",
        "required": True,
        "schema": {"type": "integer"},
    }
}


def read_responses(
    *extra_errors: int, headers: dict[str, Any] | None = None
) -> dict[int | str, Any]:
    ok: dict[int | str, Any] = {200: {"headers": {**FRESH_HEADERS, **(headers or {})}}}
    return {**ok, **problem_responses(*sorted({*READ_ERRORS, *extra_errors}))}


# Balance and check answer a Response of their own (orjson, no re-validation of the dict);
# `response_model` keeps the document's 200 schema. Most requests to them never get here: the
# middleware of fastreads.py answers them with the same functions.
@router.get(
    "/v1/credits/balance",
    response_model=dict[str, Any],
    responses=read_responses(headers=REMAINING_HEADER),
)
async def get_balance(
    request: Request,
    caller: CustomerDep,
    min_seq: MinSeq = None,
    as_of: AsOfParam = None,
    by: ByParam = None,
) -> Response:
    """Spendable credit now (services/core/spend.py): scheduled grants are not in it, what is
    owed is below zero (`overage`); the buckets' balances add up to `balance`. With `as_of`
    (or `by`): the balance as it stood then, as `creditledger balance --as-of --by` answers."""
    if as_of is not None or by is not None:
        now = datetime.now(UTC)
        return await balance_as_of_response(request, caller.account_id, as_of, by, min_seq, now)
    await wait_if_asked(request, BALANCE, caller.account_id, min_seq)
    stored = await read_state_as_customer(request.app.state.pool, caller.account_id)
    body, headers = balance_answer(caller.account_id, stored, min_seq, datetime.now(UTC))
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get(
    "/v1/credits/check",
    response_model=dict[str, Any],
    responses=read_responses(402, headers=REMAINING_HEADER),
)
async def check_credits(
    request: Request,
    caller: CustomerDep,
    cost: Annotated[int, Query(ge=0, le=MAX_CREDITS)],
    endpoint: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    min_seq: MinSeq = None,
) -> Response:
    """200 when the writer would charge a call of `cost` on `endpoint` now from credit it may
    spend (honouring `applies_to`) within the credit limit, else 402 (problem+json that still
    says `available`). The same rule as the writer's drawdown: services/core/spend.quote."""
    await wait_if_asked(request, BALANCE, caller.account_id, min_seq)
    stored = await read_state_as_customer(request.app.state.pool, caller.account_id)
    answer = check_answer(stored, cost, endpoint, min_seq, datetime.now(UTC))
    if not answer.allowed:
        raise Problem(402, "insufficient-credits", answer.detail, answer.headers, answer.body)
    rendered = orjson.dumps(answer.body)
    return Response(rendered, media_type="application/json", headers=answer.headers)


@router.get("/v1/credits/activity", responses=read_responses())
async def get_activity(
    request: Request,
    response: Response,
    caller: CustomerDep,
    from_: FromParam = None,
    to: ToParam = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """Billable calls per UTC day overlapping [from, to), net of refunds; ≤ 366 days."""
    span = day_range(from_, to, datetime.now(UTC))
    async with fresh_read(request, ACTIVITY, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(activity.ACTIVITY_DAYS, caller.account_id, span.first, span.stop)
    fresh.stamp(response)
    return {
        "from": iso(span.start),
        "to": iso(span.end),
        "days": [
            {
                "day": r["day"].isoformat(),
                "scans": r["scans"],
                "credits": r["credits"],
                "refunds": r["refunds"],
            }
            for r in rows
        ],
        "ledgerSeq": fresh.seq,
    }


def _reasons(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    wanted = sorted({part.strip() for part in raw.split(",") if part.strip()})
    unknown = [r for r in wanted if r not in ledger.REASONS]
    if not wanted or unknown:
        raise Problem(422, "invalid-request", f"reason: one or more of {', '.join(ledger.REASONS)}")
    return wanted


def _expansions(raw: str | None) -> set[str]:
    wanted = {part.strip() for part in (raw or "").split(",") if part.strip()}
    if wanted - set(ledger.EXPANSIONS):
        raise Problem(422, "invalid-request", "expand: only 'request' is supported")
    return wanted


@router.get("/v1/credits/ledger", responses=read_responses(400))
async def get_ledger(
    request: Request,
    response: Response,
    caller: CustomerDep,
    from_: FromParam = None,
    to: ToParam = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    cursor: CursorParam = None,
    expand: Annotated[str | None, Query(max_length=100)] = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """Entries newest first (seq DESC), filtered on `occurred_at` in [from, to) and `reason`."""
    start, end = parse_instant(from_, "from"), parse_instant(to, "to", end=True)
    reasons = _reasons(reason)
    with_request = "request" in _expansions(expand)
    filters = {"from": iso(start), "to": iso(end), "reason": reasons}
    before_seq: int | None = None
    if cursor is not None:
        if page is not None or offset is not None:
            raise Problem(400, "malformed-request", "cursor cannot be combined with page/offset")
        position = _seq_cursor(decode_cursor(cursor, "cursor", filters))
        before_seq, skip, page_no = position.key, 0, position.page
    else:
        if page is not None and offset is not None:
            raise Problem(400, "malformed-request", "use page or offset, not both")
        skip = offset if offset is not None else ((page or 1) - 1) * limit
        if skip > MAX_SKIP:
            raise Problem(422, "invalid-request", f"page/offset beyond {MAX_SKIP} rows: use cursor")
        page_no = skip // limit + 1
    sql = ledger.LEDGER_PAGE_WITH_REQUEST if with_request else ledger.LEDGER_PAGE
    async with fresh_read(request, LEDGER, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            sql, caller.account_id, start, end, reasons, before_seq, limit + 1, skip
        )
    fresh.stamp(response)
    has_more = len(rows) > limit
    rows = rows[:limit]
    render = ledger.entry_with_request if with_request else ledger.entry_json
    return {
        "data": [render(r) for r in rows],
        "page": page_no,
        "limit": limit,
        "hasMore": has_more,
        "nextCursor": encode_cursor(rows[-1]["seq"], page_no + 1, filters) if has_more else None,
        "ledgerSeq": fresh.seq,
    }


def _seq_cursor(position: Cursor) -> Cursor:
    key = position.key
    if not isinstance(key, int) or isinstance(key, bool) or not 1 <= key <= MAX_BIGINT:
        raise Problem(400, "invalid-cursor", "cursor is not a valid cursor")
    return position


@router.get("/v1/credits/ledger/{entry_id}", responses=read_responses(404))
async def get_ledger_entry(
    entry_id: str, request: Request, response: Response, caller: CustomerDep
) -> dict[str, Any]:
    try:
        wanted = uuid.UUID(entry_id)
    except ValueError:
        raise Problem(404, "not-found", "no such ledger entry") from None
    async with fresh_read(request, LEDGER, caller.account_id, None) as (conn, fresh):
        row = await conn.fetchrow(ledger.ONE_ENTRY, caller.account_id, wanted)
    if row is None:
        raise Problem(404, "not-found", "no such ledger entry")
    fresh.stamp(response)
    return ledger.entry_json(row)


@router.get("/v1/credits/grants", responses=read_responses(400))
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
        after_seq = _seq_cursor(decode_cursor(next_page, "next_page", filters)).key
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


@router.get("/v1/credits/grants/{grant_id}", responses=read_responses(404))
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


@router.get("/v1/usage", responses=read_responses())
async def get_usage(
    request: Request,
    response: Response,
    caller: CustomerDep,
    group_by: Literal["endpoint", "day", "month"] = "endpoint",
    from_: FromParam = None,
    to: ToParam = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """All traffic (free calls too) and net credits, grouped in SQL; ≤ 366 days."""
    span = day_range(from_, to, datetime.now(UTC))
    async with fresh_read(request, USAGE, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            usage.USAGE_SQL[group_by], caller.account_id, span.first, span.stop,
            usage.MAX_ROWS + 1,
        )  # fmt: skip
    fresh.stamp(response)
    return {
        "groupBy": group_by,
        "from": iso(span.start),
        "to": iso(span.end),
        "rows": [usage.usage_row(r) for r in rows[: usage.MAX_ROWS]],
        "hasMore": len(rows) > usage.MAX_ROWS,
        "ledgerSeq": fresh.seq,
    }


def _period_bounds(period: str, now: datetime) -> tuple[date, date]:
    today = now.date()
    if period == "daily":
        return today, today + timedelta(days=1)
    if period == "yearly":
        return date(today.year, 1, 1), date(today.year + 1, 1, 1)
    first = today.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


@router.get("/v1/account/summary", responses=read_responses())
async def get_summary(
    request: Request,
    response: Response,
    caller: CustomerDep,
    period: Literal["daily", "monthly", "yearly"] = "monthly",
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """Balance, the current UTC period's usage (all traffic; credits net), lifetime requests."""
    now = datetime.now(UTC)
    first, stop = _period_bounds(period, now)
    async with fresh_read(request, SUMMARY, caller.account_id, min_seq) as (conn, fresh):
        stored = await read_state(conn, caller.account_id)
        totals = await conn.fetchrow(usage.PERIOD_AND_LIFETIME, caller.account_id, first, stop)
        by_endpoint = await conn.fetch(
            usage.REQUESTS_BY_ENDPOINT, caller.account_id, first, stop, usage.MAX_ROWS
        )
        account = await conn.fetchrow(usage.ACCOUNT, caller.account_id)
    fresh.stamp(response)
    assert totals is not None  # an aggregate always answers one row
    balance = figures(stored.state, now)
    subscription = [b for b in balance.buckets if b.kind == "subscription"]
    return {
        "accountId": caller.account_id,
        "name": account["name"] if account else None,
        "accountCreatedAt": iso(account["created_at"]) if account else None,
        "creditBalance": balance_json(caller.account_id, balance, stored.last_updated),
        "overage": balance.overage,
        "subscription": {
            "amount": subscription[0].amount,
            "balance": subscription[0].balance,
            "resetAt": iso(balance.reset_at),
        } if subscription else None,
        "usage": {
            "period": period,
            "periodStart": iso(datetime.combine(first, time(), UTC)),
            "periodEnd": iso(datetime.combine(stop, time(), UTC)),
            "totalRequests": totals["requests"],
            "successfulRequests": totals["successful"],
            "failedRequests": totals["failed"],
            "creditsConsumed": totals["credits"],
            "requestsByEndpoint": {r["endpoint"]: r["requests"] for r in by_endpoint},
        },
        "totalRequestsAllTime": totals["lifetime_requests"],
        "ledgerSeq": fresh.seq,
    }  # fmt: skip
