"""Who is calling: a customer API key (one account) or the admin token.

Scopes: a customer key reaches only its own account's customer endpoints; the admin token
(`CREDITLEDGER_ADMIN_TOKEN`) has full admin scope. A well-formed customer key presented to an
admin endpoint answers 403 `forbidden` (wrong scope), anything else 401.

Both dependencies also apply the rate limits of `ratelimit.py`: a client IP that failed to
authenticate too often is refused with 429 before any lookup, and each authenticated caller (key
or admin token) is charged one token per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from fastapi import Request

from services.api.keys import is_well_formed, secret_hash
from services.api.problems import Problem
from services.api.ratelimit import limit_caller, record_failed_auth, refuse_if_blocked

FIND_KEY = """
SELECT account_id, key_id, revoked_at, expires_at FROM api_keys WHERE secret_sha256 = $1
"""


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
    refuse_if_blocked(request)
    try:
        caller = await _customer(request)
    except Problem:
        record_failed_auth(request)
        raise
    limit_caller(request, f"key:{caller.key_id}")
    return caller


async def _customer(request: Request) -> Caller:
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
    if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
        raise Problem(403, "key-expired", "the API key expired (it was rotated)")
    return Caller(row["account_id"], row["key_id"])


async def admin(request: Request) -> None:
    refuse_if_blocked(request)
    try:
        token = _admin_token(request)
    except Problem:
        record_failed_auth(request)
        raise
    limit_caller(request, "admin:" + hashlib.sha256(token.encode()).hexdigest()[:16])


def _admin_token(request: Request) -> str:
    expected: str | None = request.app.state.settings.admin_token
    presented = _presented_secret(request)
    if not presented:
        raise Problem(401, "unauthenticated", "the admin token is required")
    if expected is not None and secrets.compare_digest(presented.encode(), expected.encode()):
        return presented
    if is_well_formed(presented):
        raise Problem(403, "forbidden", "a customer key cannot call admin endpoints")
    raise Problem(401, "unauthenticated", "the admin token is not valid")
