"""Who is calling: a customer API key (one account) or the admin token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from services.api.keys import is_well_formed, secret_hash
from services.api.problems import Problem

FIND_KEY = "SELECT account_id, key_id, revoked_at FROM api_keys WHERE secret_sha256 = $1"


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    key_id: str


def _presented_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


async def customer(request: Request) -> Caller:
    secret = _presented_secret(request)
    if not secret:
        raise Problem(401, "unauthenticated", "an API key is required (Bearer or x-api-key)")
    if not is_well_formed(secret):
        raise Problem(401, "unauthenticated", "the API key is not valid")
    pool: asyncpg.Pool = request.app.state.pool
    row = await pool.fetchrow(FIND_KEY, secret_hash(secret))
    if row is None:
        raise Problem(401, "unauthenticated", "the API key is not valid")
    if row["revoked_at"] is not None:
        raise Problem(403, "key-revoked", "the API key was revoked")
    return Caller(row["account_id"], row["key_id"])


async def admin(request: Request) -> None:
    expected: str | None = request.app.state.settings.admin_token
    presented = _presented_secret(request)
    if not presented:
        raise Problem(401, "unauthenticated", "the admin token is required")
    if expected is not None and secrets.compare_digest(presented, expected):
        return
    if is_well_formed(presented):
        raise Problem(403, "forbidden", "a customer key cannot call admin endpoints")
    raise Problem(401, "unauthenticated", "the admin token is not valid")
