"""Admin: the accounts, listed (paged) and one by one, with name, balance, available, overage
and last activity (`reads/accounts.py`: the balance endpoint's figures, now).

Scope `accounts:read` (implied by `admin`). A service token's `credits:read` does not imply it:
reading a named account's credits is not enumerating every account. `POST /v1/admin/accounts`
(registering a name) stays with the other account writes in routes_accounts_admin.py.

Paging as the grants list does: `limit` (1-500, default 100) and the opaque `next_page` token the
previous page answered (`nextPage`, null on the last page), bound to this list; ordered by
account id, keyset-paginated, so a walk sees every account that existed throughout it once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.api.auth import ACCOUNT_ID, admin, require
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import bounded_body
from services.api.reads import accounts
from services.api.reads.common import decode_cursor, encode_cursor

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin), Depends(bounded_body)]
)
ACCOUNTS_READ = [Depends(require("accounts:read"))]
ADMIN_ERRORS = (400, 401, 403, 413, 422, 429)
AccountPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
NO_FILTERS: dict[str, object] = {"list": "accounts"}  # what a `next_page` token is bound to


class AdminAccount(BaseModel):
    """An account as the admin API shows it; the figures are `GET /v1/credits/balance`'s."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    account_id: str
    name: str | None = Field(description="null: known from its events only, never registered")
    registered: bool = Field(description="named through POST /v1/admin/accounts")
    created_at: datetime | None = Field(description="when it was registered")
    balance: int = Field(description="spendable now; below zero when owed")
    available: int = Field(description="balance minus reserved (holds)")
    overage: int = Field(description="owed, >= 0")
    reserved: int
    scheduled: int = Field(description="credit of grants not yet effective")
    ledger_seq: int = Field(description="the account's last ledger seq these figures reflect")
    last_activity_at: datetime | None = Field(
        description="when the writer last changed the account (the balance's lastUpdated)"
    )


class AdminAccountPage(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    data: list[AdminAccount]
    limit: int
    has_more: bool
    next_page: str | None = Field(description="pass as `next_page` for the next page")


def _account_json(read: accounts.AccountRead) -> AdminAccount:
    money = read.figures
    return AdminAccount(
        account_id=read.account_id, name=read.name, registered=read.registered,
        created_at=read.created_at, balance=money.balance, available=money.available,
        overage=money.overage, reserved=money.reserved, scheduled=money.scheduled,
        ledger_seq=money.seq, last_activity_at=read.last_activity_at,
    )  # fmt: skip


def _after(token: str | None) -> str:
    """The last account id of the previous page ('' for the first)."""
    if token is None:
        return ""
    key = decode_cursor(token, "next_page", NO_FILTERS).key
    if not isinstance(key, str) or not ACCOUNT_ID.fullmatch(key):
        raise Problem(400, "invalid-cursor", "next_page is not a valid cursor")
    return key


@router.get(
    "/accounts",
    response_model=AdminAccountPage,
    operation_id="listAccounts",
    summary="List every account (registered or known from its events), by id",
    dependencies=ACCOUNTS_READ,
    responses=problem_responses(*ADMIN_ERRORS),
)
async def list_accounts(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=accounts.MAX_LIMIT)] = accounts.DEFAULT_LIMIT,
    next_page: Annotated[str | None, Query(max_length=512)] = None,
) -> AdminAccountPage:
    pool: asyncpg.Pool = request.app.state.pool
    rows = await pool.fetch(accounts.ACCOUNTS_PAGE, _after(next_page), limit + 1)
    now = datetime.now(UTC)
    page = [_account_json(accounts.account_read(row, now)) for row in rows[:limit]]
    has_more = len(rows) > limit
    token = encode_cursor(page[-1].account_id, 1, NO_FILTERS) if has_more else None
    return AdminAccountPage(data=page, limit=limit, has_more=has_more, next_page=token)


@router.get(
    "/accounts/{account_id}",
    response_model=AdminAccount,
    operation_id="getAccount",
    summary="One account: name, balance, available, overage, last activity",
    dependencies=ACCOUNTS_READ,
    responses=problem_responses(*sorted({*ADMIN_ERRORS, 404})),
)
async def get_account(account_id: AccountPath, request: Request) -> AdminAccount:
    pool: asyncpg.Pool = request.app.state.pool
    row = await pool.fetchrow(accounts.ONE_ACCOUNT, account_id)
    if row is None:
        raise Problem(404, "not-found", f"no account {account_id}")
    return _account_json(accounts.account_read(row, datetime.now(UTC)))
