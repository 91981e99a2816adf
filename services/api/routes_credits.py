"""Customer reads. Every query names the caller's account: another account's data is unreachable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response

from projections.balance.apply import BalanceView, buckets_by_kind, reset_at
from projections.balance.store import read_view
from services.api.auth import Caller, customer

router = APIRouter(prefix="/v1/credits", tags=["credits"])
CustomerDep = Annotated[Caller, Depends(customer)]


def balance_body(view: BalanceView, now: datetime) -> dict[str, Any]:
    return {
        "accountId": view.account_id,
        "balance": view.balance,
        "reserved": view.reserved,
        "available": view.available,
        "grantedTotal": view.granted_total,
        "consumedTotal": view.consumed_total,
        "buckets": buckets_by_kind(view),
        "resetAt": _iso(reset_at(view, now)),
        "lastUpdated": _iso(view.last_updated),
        # How fresh this read is: the ledger seq of the account's last entry it reflects.
        "ledgerSeq": view.last_seq,
    }


@router.get("/balance")
async def get_balance(request: Request, response: Response, caller: CustomerDep) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    view = await read_view(pool, caller.account_id) or BalanceView(account_id=caller.account_id)
    response.headers["X-Credits-Remaining"] = str(view.available)
    return balance_body(view, datetime.now(UTC))


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
