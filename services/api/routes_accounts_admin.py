"""Admin: `POST /v1/admin/accounts` (the account's name; an account exists from its first event
on Kafka, this only names it). The same account again with the same name answers 200."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from schemas.common import AccountId
from services.api.admin_common import (
    ACCOUNT_NAME,
    ACCOUNTS_WRITE,
    admin_doc,
    admin_router,
    hand_body,
    json_object,
    parse_body,
)
from services.api.models import admin as out
from services.api.problems import Problem

router = admin_router()

CREATE_ACCOUNT = """
INSERT INTO accounts (account_id, name) VALUES ($1, $2)
ON CONFLICT (account_id) DO NOTHING RETURNING account_id
"""


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: AccountId
    name: Annotated[str, Field(min_length=1, max_length=200)]


@router.post(
    "/accounts",
    status_code=201,
    response_model=out.Account,
    operation_id="createAccount",
    summary="Name an account (it exists from its first event on Kafka)",
    dependencies=ACCOUNTS_WRITE,
    responses={
        200: {
            "description": "The account exists already, with this name: nothing to create",
            "model": out.Account,
        },
        **admin_doc(409),
    },
    openapi_extra=hand_body(NewAccount),
)
async def create_account(request: Request, response: Response) -> dict[str, Any]:
    body = parse_body(NewAccount, await json_object(request))
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.fetchval(CREATE_ACCOUNT, body.account_id, body.name) is None:
        existing = await pool.fetchval(ACCOUNT_NAME, body.account_id)
        if existing != body.name:
            raise Problem(409, "conflict", f"account {body.account_id} exists with another name")
        response.status_code = 200  # the same account again: nothing to create
    return {"accountId": body.account_id, "name": body.name}
