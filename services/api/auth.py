"""Who is calling: a customer API key (one account) or an admin token.

Scopes: a customer key reaches only its own account's customer endpoints. Admin tokens carry
scopes (`SCOPES`): the env token (`CREDITLEDGER_ADMIN_TOKEN`) has `admin` (everything); tokens
minted through `POST /v1/admin/tokens` (`cl_adm_…`, stored only as SHA-256 in `admin_tokens`)
have the scopes they were given. Each admin route declares the scope it needs with
`Depends(require(scope))`: a token without it answers 403 `insufficient-scope` naming the scope,
a revoked token 403 `token-revoked`, a well-formed customer key 403 `forbidden`, anything else 401.

Customer keys verified in the database are remembered for at most `api_key_cache_ttl_s`
(`keycache.py`): a revoked key is refused within that bound, and an unknown, revoked or expired
key is never remembered.

Both dependencies also apply the rate limits of `ratelimit.py`: a client IP that presented
unknown credentials (401) too often is refused with 429 before any lookup, and each authenticated
caller (key or admin token) is charged one token per request. A 403 (revoked, expired, or a
customer key on an admin route) is a real credential refused, not a guess: it is not counted.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api.keycache import VerifiedKey, key_cache
from services.api.keys import is_well_formed, secret_hash
from services.api.problems import Problem
from services.api.ratelimit import limit_caller, record_failed_auth, refuse_if_blocked
from services.api.reads.balance import KEY_AND_STATE, StoredState, customer_fetchrow, stored_state

ADMIN_TOKEN_PREFIX = "cl_adm_"
# `admin` implies every other scope (and alone may manage admin tokens).
SCOPES = (
    "accounts:write", "keys:write", "commands:write", "commands:read", "events:write", "admin",
)  # fmt: skip
ENV_TOKEN_ID = "env"
FIND_ADMIN_TOKEN = """
SELECT token_id, scopes, revoked_at FROM admin_tokens WHERE tenant = '*' AND secret_sha256 = $1
"""
FIND_KEY = """
SELECT account_id, key_id, revoked_at, expires_at FROM api_keys WHERE secret_sha256 = $1
"""


# The OpenAPI document's security schemes. They only document: `auto_error=False` makes them
# accept anything, and `customer`/`admin` below decide (so every refusal is problem+json).
CUSTOMER_KEY = HTTPBearer(
    scheme_name="customerKey", auto_error=False,
    description="A customer API key (`cl_live_…`) as `Authorization: Bearer <key>`",
)  # fmt: skip
CUSTOMER_KEY_HEADER = APIKeyHeader(
    name="x-api-key", scheme_name="customerKeyHeader", auto_error=False,
    description="A customer API key (`cl_live_…`) in the `x-api-key` header",
)  # fmt: skip
ADMIN_TOKEN = HTTPBearer(
    scheme_name="adminToken", auto_error=False,
    description="The admin token (CREDITLEDGER_ADMIN_TOKEN) or a minted `cl_adm_…` token",
)  # fmt: skip
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(CUSTOMER_KEY)]
HeaderDoc = Annotated[str | None, Security(CUSTOMER_KEY_HEADER)]
AdminDoc = Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    key_id: str


@dataclass(frozen=True, slots=True)
class AdminCaller:
    token_id: str  # `env` for CREDITLEDGER_ADMIN_TOKEN
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def presented_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


async def customer(request: Request, _: BearerDoc = None, __: HeaderDoc = None) -> Caller:
    refuse_if_blocked(request)
    try:
        caller = await _customer(request)
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, f"key:{caller.key_id}")
    return caller


async def customer_and_state(request: Request) -> tuple[Caller, StoredState | None]:
    """`customer`, and on a key-cache miss the key's account state read by the same statement
    (balance and check: one round trip); None when the key came from the cache."""
    refuse_if_blocked(request)
    try:
        key, row = await _identify(request, _key_and_state)
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, f"key:{key.key_id}")
    stored = None if row is None else stored_state(key.account_id, row)
    return Caller(key.account_id, key.key_id), stored


def presented_key_hash(request: Request) -> str:
    """The SHA-256 of the customer key presented; 401 before any lookup when there is none or it
    is malformed."""
    secret = presented_secret(request)
    if not secret:
        raise Problem(401, "unauthenticated", "an API key is required (Bearer or x-api-key)")
    if not is_well_formed(secret):
        raise Problem(401, "unauthenticated", "the API key is not valid")
    return secret_hash(secret)


async def _customer(request: Request) -> Caller:
    key, _ = await _identify(request, _key_only)
    return Caller(key.account_id, key.key_id)


KeyLookup = Callable[[asyncpg.Pool, str], Awaitable[asyncpg.Record | None]]


async def _key_only(pool: asyncpg.Pool, digest: str) -> asyncpg.Record | None:
    return await pool.fetchrow(FIND_KEY, digest)


async def _key_and_state(pool: asyncpg.Pool, digest: str) -> asyncpg.Record | None:
    return await customer_fetchrow(pool, KEY_AND_STATE, digest)


async def _identify(
    request: Request, lookup: KeyLookup
) -> tuple[VerifiedKey, asyncpg.Record | None]:
    """The presented key, from the cache or verified by `lookup` (then its row too, else None);
    only a key valid now is remembered."""
    digest = presented_key_hash(request)
    cache = key_cache(request)
    key = cache.get(digest)
    if key is not None:
        _refuse_if_expired(key)
        return key, None
    row = await lookup(request.app.state.pool, digest)
    key = _verified(row)
    _refuse_if_expired(key)
    cache.put(digest, key)
    return key, row


def _verified(row: asyncpg.Record | None) -> VerifiedKey:
    if row is None:
        raise Problem(401, "unauthenticated", "the API key is not valid")
    if row["revoked_at"] is not None:
        raise Problem(403, "key-revoked", "the API key was revoked")
    return VerifiedKey(row["account_id"], row["key_id"], row["expires_at"])


def _refuse_if_expired(key: VerifiedKey) -> None:
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise expired_refusal(key.key_id)


# Keys a dashboard sign-in link was traded for (routes_dashboard_sessions.py).
DASHBOARD_SESSION_KEY_PREFIX = "dsn_"


def expired_refusal(key_id: str) -> Problem:
    """A rotated key's expiry is a refusal (403); a dashboard session's is the end of a sign-in
    (401: sign in again)."""
    if key_id.startswith(DASHBOARD_SESSION_KEY_PREFIX):
        return Problem(401, "session-expired", "the dashboard session expired: sign in again")
    return Problem(403, "key-expired", "the API key expired (it was rotated)")


async def admin(request: Request, _: AdminDoc = None) -> AdminCaller:
    """Any valid admin token (FastAPI caches it per request, so `require` reuses it)."""
    refuse_if_blocked(request)
    try:
        token, caller = await _admin_token(request)
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, "admin:" + hashlib.sha256(token.encode()).hexdigest()[:16])
    return caller


def _count_guess(request: Request, refused: Problem) -> None:
    if refused.status == 401:
        record_failed_auth(request)


def require(scope: str) -> Callable[[AdminCaller], Awaitable[AdminCaller]]:
    """A dependency: the admin caller, refused with 403 `insufficient-scope` lacking `scope`."""
    assert scope in SCOPES, scope

    async def scoped(caller: Annotated[AdminCaller, Depends(admin)]) -> AdminCaller:
        if not caller.allows(scope):
            raise Problem(
                403, "insufficient-scope", f"this admin token lacks the scope {scope}",
                extra={"scope": scope},
            )  # fmt: skip
        return caller

    return scoped


async def _admin_token(request: Request) -> tuple[str, AdminCaller]:
    expected: str | None = request.app.state.settings.admin_token
    presented = presented_secret(request)
    if not presented:
        raise Problem(401, "unauthenticated", "the admin token is required")
    if expected is not None and secrets.compare_digest(presented.encode(), expected.encode()):
        return presented, AdminCaller(ENV_TOKEN_ID, frozenset({"admin"}))
    if presented.startswith(ADMIN_TOKEN_PREFIX) and len(presented) <= 256:
        pool: asyncpg.Pool = request.app.state.pool
        row = await pool.fetchrow(FIND_ADMIN_TOKEN, secret_hash(presented))
        if row is not None:
            if row["revoked_at"] is not None:
                raise Problem(403, "token-revoked", "the admin token was revoked")
            return presented, AdminCaller(row["token_id"], frozenset(row["scopes"]))
    if is_well_formed(presented):
        raise Problem(403, "forbidden", "a customer key cannot call admin endpoints")
    raise Problem(401, "unauthenticated", "the admin token is not valid")
