"""Admin: accounts and keys. (Commands over HTTP come with the API issue.)"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from schemas.common import AccountId
from services.api.auth import admin
from services.api.keys import new_key_id, new_secret, secret_hash
from services.api.problems import Problem

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])

CREATE_ACCOUNT = """
INSERT INTO accounts (account_id, name) VALUES ($1, $2)
ON CONFLICT (account_id) DO NOTHING RETURNING account_id
"""
ACCOUNT_NAME = "SELECT name FROM accounts WHERE account_id = $1"
CREATE_KEY = "INSERT INTO api_keys (account_id, key_id, secret_sha256) VALUES ($1, $2, $3)"
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE account_id = $1 AND key_id = $2 AND revoked_at IS NULL
"""


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: AccountId
    name: Annotated[str, Field(min_length=1, max_length=200)]


@router.post("/accounts", status_code=201)
async def create_account(body: NewAccount, request: Request, response: Response) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.fetchval(CREATE_ACCOUNT, body.account_id, body.name) is None:
        existing = await pool.fetchval(ACCOUNT_NAME, body.account_id)
        if existing != body.name:
            raise Problem(409, "conflict", f"account {body.account_id} exists with another name")
        response.status_code = 200  # the same account again: nothing to create
    return {"accountId": body.account_id, "name": body.name}


@router.post("/accounts/{account_id}/keys", status_code=201)
async def create_key(account_id: str, request: Request) -> dict[str, str]:
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.fetchval(ACCOUNT_NAME, account_id) is None:
        raise Problem(404, "not-found", f"no account {account_id}")
    key_id, secret = new_key_id(), new_secret()
    await pool.execute(CREATE_KEY, account_id, key_id, secret_hash(secret))
    return {"keyId": key_id, "secret": secret}


@router.delete("/accounts/{account_id}/keys/{key_id}", status_code=204)
async def revoke_key(account_id: str, key_id: str, request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.execute(REVOKE_KEY, account_id, key_id) == "UPDATE 0":
        raise Problem(404, "not-found", f"no active key {key_id} for account {account_id}")
    return Response(status_code=204)
