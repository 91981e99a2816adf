"""Admin: admin tokens (scope `admin`): mint with scopes, list, revoke. A secret (`cl_adm_…`) is
shown once and stored only hashed."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import asyncpg
from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.admin_common import (
    ADMIN_ONLY,
    admin_doc,
    admin_router,
    hand_body,
    iso_or_none,
    json_object,
    parse_body,
)
from services.api.auth import ADMIN_TOKEN_PREFIX, Scope
from services.api.keys import secret_hash
from services.api.models import admin as out
from services.api.problems import Problem
from services.api.reads.common import ObjectId

router = admin_router()

CREATE_ADMIN_TOKEN = """
INSERT INTO admin_tokens (token_id, name, secret_sha256, scopes) VALUES ($1, $2, $3, $4)
RETURNING created_at
"""
LIST_ADMIN_TOKENS = """
SELECT token_id, name, scopes, created_at, revoked_at FROM admin_tokens
WHERE tenant = '*' ORDER BY created_at, token_id
"""
REVOKE_ADMIN_TOKEN = """
UPDATE admin_tokens SET revoked_at = now()
WHERE tenant = '*' AND token_id = $1 AND revoked_at IS NULL
"""


class NewAdminToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope.__args__))]


@router.post(
    "/tokens",
    status_code=201,
    response_model=out.NewAdminToken,
    operation_id="createAdminToken",
    summary="Mint an admin token with scopes (the secret is shown once)",
    dependencies=ADMIN_ONLY,
    responses=admin_doc(),
    openapi_extra=hand_body(NewAdminToken),
)
async def create_admin_token(request: Request) -> dict[str, Any]:
    """Mint an admin token with the given scopes; the secret (`cl_adm_…`) is shown once."""
    body = parse_body(NewAdminToken, await json_object(request))
    scopes = sorted(set(body.scopes))
    token_id, secret = "adm_" + secrets.token_hex(8), ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    pool: asyncpg.Pool = request.app.state.pool
    created_at = await pool.fetchval(
        CREATE_ADMIN_TOKEN, token_id, body.name, secret_hash(secret), scopes
    )
    return {
        "tokenId": token_id, "name": body.name, "secret": secret, "scopes": scopes,
        "createdAt": iso_or_none(created_at),
    }  # fmt: skip


@router.get(
    "/tokens",
    response_model=out.AdminTokens,
    operation_id="listAdminTokens",
    summary="Every minted admin token, revoked ones included; never a secret",
    dependencies=ADMIN_ONLY,
    responses=admin_doc(),
)
async def list_admin_tokens(request: Request) -> dict[str, Any]:
    """Every minted admin token, revoked ones included; never a secret."""
    pool: asyncpg.Pool = request.app.state.pool
    tokens = [
        {
            "tokenId": r["token_id"], "name": r["name"], "scopes": list(r["scopes"]),
            "createdAt": iso_or_none(r["created_at"]), "revokedAt": iso_or_none(r["revoked_at"]),
            "active": r["revoked_at"] is None,
        }
        for r in await pool.fetch(LIST_ADMIN_TOKENS)
    ]  # fmt: skip
    return {"tokens": tokens}


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    operation_id="revokeAdminToken",
    summary="Revoke an admin token: it answers 403 from then on",
    dependencies=ADMIN_ONLY,
    responses=admin_doc(404),
)
async def revoke_admin_token(token_id: ObjectId, request: Request) -> Response:
    """Revoke: the token answers 403 from then on."""
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.execute(REVOKE_ADMIN_TOKEN, token_id) == "UPDATE 0":
        raise Problem(404, "not-found", f"no active admin token {token_id}")
    return Response(status_code=204)
