"""Admin: an account's API keys: issue, list, rotate with overlap, revoke. A secret is shown once
and stored only hashed (keys.py); revoking or rotating forgets this process's key cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.admin_common import (
    KEYS_WRITE,
    AccountPath,
    admin_doc,
    admin_router,
    hand_body,
    iso_or_none,
    json_object,
    parse_body,
    require_account,
)
from services.api.keycache import key_cache
from services.api.keys import new_key_id, new_secret, secret_hash
from services.api.models import admin as out
from services.api.problems import Problem
from services.api.reads.common import ObjectId

router = admin_router()
DEFAULT_OVERLAP_S = 24 * 3600
MAX_OVERLAP_S = 30 * 24 * 3600

CREATE_KEY = """
INSERT INTO api_keys (account_id, key_id, secret_sha256, expires_at) VALUES ($1, $2, $3, $4)
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE account_id = $1 AND key_id = $2 AND revoked_at IS NULL
"""
LIST_KEYS = """
SELECT key_id, created_at, revoked_at, expires_at FROM api_keys
WHERE account_id = $1 ORDER BY created_at, key_id
"""
LOCK_LIVE_KEY = """
SELECT expires_at FROM api_keys
WHERE account_id = $1 AND key_id = $2 AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
FOR UPDATE
"""
EXPIRE_KEY = """
UPDATE api_keys SET expires_at = $3 WHERE account_id = $1 AND key_id = $2
"""


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: datetime | None = None


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: Annotated[int, Field(ge=0, le=MAX_OVERLAP_S, strict=True)] = DEFAULT_OVERLAP_S


@router.post(
    "/accounts/{account_id}/keys",
    status_code=201,
    response_model=out.NewKey,
    operation_id="createKey",
    summary="Issue an API key for the account (the secret is shown once)",
    dependencies=KEYS_WRITE,
    responses=admin_doc(404),
    openapi_extra=hand_body(NewKey, required=False),
)
async def create_key(account_id: AccountPath, request: Request) -> dict[str, Any]:
    """Issue a key; optional body `{"expires_at": …}`. The secret is shown once."""
    body = parse_body(NewKey, await json_object(request, empty_ok=True))
    pool: asyncpg.Pool = request.app.state.pool
    await require_account(pool, account_id)
    key_id, secret = new_key_id(), new_secret()
    await pool.execute(CREATE_KEY, account_id, key_id, secret_hash(secret), body.expires_at)
    return {"keyId": key_id, "secret": secret, "expiresAt": iso_or_none(body.expires_at)}


@router.get(
    "/accounts/{account_id}/keys",
    response_model=out.Keys,
    operation_id="listKeys",
    summary="The account's API keys, revoked and expired ones included; never a secret",
    dependencies=KEYS_WRITE,
    responses=admin_doc(404),
)
async def list_keys(account_id: AccountPath, request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    await require_account(pool, account_id)
    now = datetime.now(UTC)
    keys = [_key_json(r, now) for r in await pool.fetch(LIST_KEYS, account_id)]
    return {"accountId": account_id, "keys": keys}


def _key_json(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    expires_at: datetime | None = row["expires_at"]
    return {
        "keyId": row["key_id"], "createdAt": iso_or_none(row["created_at"]),
        "revokedAt": iso_or_none(row["revoked_at"]), "expiresAt": iso_or_none(expires_at),
        "active": row["revoked_at"] is None and (expires_at is None or expires_at > now),
    }  # fmt: skip


@router.post(
    "/accounts/{account_id}/keys/{key_id}/rotate",
    status_code=201,
    response_model=out.Rotation,
    operation_id="rotateKey",
    summary="Issue a new key; the old one keeps working for an overlap",
    dependencies=KEYS_WRITE,
    responses=admin_doc(404),
    openapi_extra=hand_body(Rotation, required=False),
)
async def rotate_key(account_id: AccountPath, key_id: ObjectId, request: Request) -> dict[str, Any]:
    """Issue a new key; the old one keeps working for `overlap_seconds` (default 24 h)."""
    body = parse_body(Rotation, await json_object(request, empty_ok=True))
    pool: asyncpg.Pool = request.app.state.pool
    new_id, secret = new_key_id(), new_secret()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_LIVE_KEY, account_id, key_id)
        if row is None:
            raise Problem(404, "not-found", f"no active key {key_id} for account {account_id}")
        old_expires = datetime.now(UTC) + timedelta(seconds=body.overlap_seconds)
        if row["expires_at"] is not None:
            old_expires = min(old_expires, row["expires_at"])
        await conn.execute(EXPIRE_KEY, account_id, key_id, old_expires)
        await conn.execute(CREATE_KEY, account_id, new_id, secret_hash(secret), None)
    key_cache(request).forget_all()  # the old key's new expiry applies here at once
    return {
        "keyId": new_id, "secret": secret, "expiresAt": None,
        "rotated": {"keyId": key_id, "expiresAt": iso_or_none(old_expires)},
    }  # fmt: skip


@router.delete(
    "/accounts/{account_id}/keys/{key_id}",
    status_code=204,
    operation_id="revokeKey",
    summary="Revoke a key: it answers 403 from then on",
    dependencies=KEYS_WRITE,
    responses=admin_doc(404),
)
async def revoke_key(account_id: AccountPath, key_id: ObjectId, request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.execute(REVOKE_KEY, account_id, key_id) == "UPDATE 0":
        raise Problem(404, "not-found", f"no active key {key_id} for account {account_id}")
    key_cache(request).forget_all()  # refused here at once; other processes within the TTL
    return Response(status_code=204)
