"""Customer reads: the account summary (balance, the period's usage, lifetime requests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from services.api.models import TYPED
from services.api.models.reads import Summary
from services.api.read_params import (
    CustomerDep,
    read_responses,
)
from services.api.reads import usage
from services.api.reads.balance import (
    balance_json,
    read_state,
)
from services.api.reads.common import (
    iso,
)
from services.api.reads.freshness import (
    SUMMARY,
    MinSeq,
    fresh_read,
)
from services.core.spend import figures

router = APIRouter(tags=["credits"])


def _period_bounds(period: str, now: datetime) -> tuple[date, date]:
    today = now.date()
    if period == "daily":
        return today, today + timedelta(days=1)
    if period == "yearly":
        return date(today.year, 1, 1), date(today.year + 1, 1, 1)
    first = today.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


@router.get(
    "/v1/account/summary",
    response_model=Summary,
    operation_id="getAccountSummary",
    summary="Balance, the period's usage and lifetime requests",
    responses=read_responses(),
    **TYPED,
)
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
