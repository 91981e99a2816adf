"""`GET /v1/credits/balance/daily`: the balance at the end of each of the last `days` UTC days.

By event time (`occurred_at`): each day's figure is the sum of the deltas of every entry that
occurred before that day ended, so a call is charted on the day it happened, however late it
was recorded. Today's figure is the ledger's last `balance_after` (entries dated up to the
future skew ahead included).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Caller, customer
from services.api.problems import problem_responses
from services.api.read_params import READ_ERRORS
from services.api.reads.account import DAILY_CHANGES, daily_balances
from services.api.reads.freshness import LEDGER, fresh_read

router = APIRouter(tags=["credits"])
CustomerDep = Annotated[Caller, Depends(customer)]
FAR_AHEAD = timedelta(days=7)  # beyond any future skew the writer accepts


class DailyBalance(BaseModel):
    day: str = Field(description="a UTC day, YYYY-MM-DD")
    balance: int = Field(description="the balance when the day ended (today: now)")
    change: int = Field(description="the sum of the day's entries")


class BalanceHistory(BaseModel):
    account_id: str = Field(alias="accountId")
    by: str = Field(description="the clock the days are on: always `occurred`")
    days: list[DailyBalance]
    ledger_seq: int = Field(alias="ledgerSeq")
    model_config = ConfigDict(populate_by_name=True)


@router.get(
    "/v1/credits/balance/daily",
    response_model=BalanceHistory,
    response_model_by_alias=True,
    operation_id="getDailyBalance",
    summary="End-of-day balances over the last days (a burn-down), by event time",
    responses=problem_responses(*READ_ERRORS),
)
async def get_daily_balance(
    request: Request,
    response: Response,
    caller: CustomerDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(today, datetime.min.time(), UTC) + FAR_AHEAD
    async with fresh_read(request, LEDGER, caller.account_id, None) as (conn, fresh):
        rows = await conn.fetch(DAILY_CHANGES, caller.account_id, start, end)
    fresh.stamp(response)
    # Entries dated after today (within the skew) count in today's figure.
    clipped = [r if r["day"] is None or r["day"] <= today else {"day": today, "change": r["change"]}
               for r in rows]  # fmt: skip
    merged: dict[Any, int] = {}
    for r in clipped:
        merged[r["day"]] = merged.get(r["day"], 0) + r["change"]
    history = daily_balances([{"day": d, "change": c} for d, c in merged.items()], first, days)
    return {"accountId": caller.account_id, "by": "occurred", "days": history,
            "ledgerSeq": fresh.seq}  # fmt: skip
