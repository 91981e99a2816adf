"""`GET /v1/account/alerts`: the account's recent alerts, newest first.

Derived from the ledger (see reads/account.py for why and for the limits, which the answer's
`basis` repeats): the same crossings the writer alerts on, over the last `days` UTC days of
event time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Caller, customer
from services.api.problems import problem_responses
from services.api.read_params import READ_ERRORS
from services.api.reads.account import (
    ALERTS_BASIS,
    MAX_WINDOW_ENTRIES,
    OPENING,
    WINDOW_ENTRIES,
    recent_alerts,
)
from services.api.reads.balance import read_state
from services.api.reads.freshness import LEDGER, fresh_read

router = APIRouter(tags=["account"])
CustomerDep = Annotated[Caller, Depends(customer)]


class Alert(BaseModel):
    type: str = Field(description="low_balance, depleted, overage, auto_reload_requested, …")
    at: datetime = Field(description="the event time of the entry that crossed the line")
    seq: int = Field(description="that ledger entry's seq")
    data: dict[str, Any]


class RecentAlerts(BaseModel):
    account_id: str = Field(alias="accountId")
    since: datetime
    alerts: list[Alert]
    basis: str = Field(description="how the alerts were found")
    ledger_seq: int = Field(alias="ledgerSeq")
    model_config = ConfigDict(populate_by_name=True)


@router.get(
    "/v1/account/alerts",
    response_model=RecentAlerts,
    response_model_by_alias=True,
    operation_id="listRecentAlerts",
    summary="Recent alerts (low balance, depleted, overage, auto-reload, grant expired)",
    responses=problem_responses(*READ_ERRORS),
)
async def list_recent_alerts(
    request: Request,
    response: Response,
    caller: CustomerDep,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    since = datetime.combine(now.date() - timedelta(days=days - 1), datetime.min.time(), UTC)
    account_id = caller.account_id
    async with fresh_read(request, LEDGER, account_id, None) as (conn, fresh):
        entries = await conn.fetch(WINDOW_ENTRIES, account_id, since, MAX_WINDOW_ENTRIES)
        first_seq = entries[0]["seq"] if entries else fresh.seq + 1
        opening = await conn.fetchrow(OPENING, account_id, first_seq)
        stored = await read_state(conn, account_id)
    fresh.stamp(response)
    found = recent_alerts(stored.state.settings, opening, entries, has_history=first_seq > 1)
    return {
        "accountId": account_id, "since": since, "alerts": found[::-1][:limit],
        "basis": ALERTS_BASIS, "ledgerSeq": fresh.seq,
    }  # fmt: skip
