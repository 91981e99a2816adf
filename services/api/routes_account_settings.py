"""`GET /v1/account/settings`: the account's alert thresholds, auto-reload, credit limit and
grant-expiring notice.

They are set by the `account_settings` command (admin `POST .../settings`) and live in the
writer's account state; this read answers them as the writer will apply them, from the same
row balance and check read (reads/balance.py, row-level security as the customer).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Caller, customer
from services.api.problems import problem_responses
from services.api.read_params import READ_ERRORS
from services.api.reads.account import settings_json
from services.api.reads.balance import read_state_as_customer

router = APIRouter(tags=["account"])
CustomerDep = Annotated[Caller, Depends(customer)]


class AutoReloadSettings(BaseModel):
    threshold: int = Field(description="an auto-reload is requested when available drops below")
    amount: int
    max_per_day: int = Field(alias="maxPerDay")
    model_config = ConfigDict(populate_by_name=True)


class AccountSettingsRead(BaseModel):
    account_id: str = Field(alias="accountId")
    low_balance_threshold: int | None = Field(alias="lowBalanceThreshold")
    auto_reload: AutoReloadSettings | None = Field(alias="autoReload")
    credit_limit: int = Field(alias="creditLimit")
    grant_expiring_notice_s: int = Field(
        alias="grantExpiringNoticeS",
        description="how long before a grant expires its grant_expiring webhook is sent, in s",
    )
    ledger_seq: int = Field(alias="ledgerSeq")
    model_config = ConfigDict(populate_by_name=True)


@router.get(
    "/v1/account/settings",
    response_model=AccountSettingsRead,
    response_model_by_alias=True,
    operation_id="getAccountSettings",
    summary="Alert thresholds, auto-reload and credit limit, as the writer applies them",
    responses=problem_responses(*READ_ERRORS),
)
async def get_account_settings(
    request: Request, response: Response, caller: CustomerDep
) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    stored = await read_state_as_customer(pool, caller.account_id)
    response.headers["X-Ledger-Seq"] = str(stored.state.seq)
    return settings_json(caller.account_id, stored.state.settings, stored.state.seq)
