"""Who is calling: a customer API key (one account), a service token (an admin token reading
one named account), or an admin token.

Scopes: a customer key reaches only its own account's customer endpoints. Admin tokens carry
scopes (`SCOPES`): the env token (`CREDITLEDGER_ADMIN_TOKEN`) has `admin` (everything); tokens
minted through `POST /v1/admin/tokens` (`cl_adm_…`, stored only as SHA-256 in `admin_tokens`)
have the scopes they were given. Each admin route declares the scope it needs with
`Depends(require(scope))`: a token without it answers 403 `insufficient-scope` naming the scope,
a revoked token 403 `token-revoked`, a well-formed customer key 403 `forbidden`, anything else 401.

Service tokens: an admin token with `credits:read` (or `admin`) on a customer read reads the
account named by `Creditledger-Account` exactly as that account's own key would (the same
`Caller`, so the same queries under the same row-level security): 400 `account-required`
without the header (or with a value that cannot be an account id), 404 for an account that
neither the admin API registered (`accounts`) nor the writer has state for (`writer_accounts`:
an account exists from its first event). A token lacking the scope answers 403
`insufficient-scope`. A customer key naming another account in the header answers 404 (it sees
only its own).

One credential per request: `Authorization: Bearer` and `x-api-key` (or one of them twice)
carrying two different values answer 400 `conflicting-credentials`, before any lookup. Every
401 carries `WWW-Authenticate: Bearer realm="creditledger"`.

Customer keys verified in the database are remembered for at most `api_key_cache_ttl_s`
(`keycache.py`): a revoked key is refused within that bound, and an unknown, revoked or expired
key is never remembered. Admin tokens are looked up on every request (a revoke is at once).

Both dependencies also apply the rate limits of `ratelimit.py`: a client IP that presented
unknown credentials (401) too often is refused with 429 before any lookup, and each authenticated
caller (key or admin token) is charged one token per request. A 403 (revoked, expired, or a
customer key on an admin route) is a real credential refused, not a guess: it is not counted;
nor is a 400 (refused by its form, before any lookup).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

import asyncpg
from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api.keycache import VerifiedKey, key_cache, known_accounts
from services.api.keys import is_well_formed, secret_hash
from services.api.problems import Problem
from services.api.ratelimit import limit_caller, record_failed_auth, refuse_if_blocked
from services.api.reads.balance import KEY_AND_STATE, StoredState, customer_fetchrow, stored_state

ADMIN_TOKEN_PREFIX = "cl_adm_"
# The one list of admin token scopes. `admin` implies every other scope (and alone may manage
# admin tokens); `credits:read` is the service token's: every customer read, of any account.
Scope = Literal[
    "accounts:read", "accounts:write", "keys:write", "commands:write", "commands:read",
    "credits:read", "events:write", "webhooks:write", "webhooks:read", "admin",
]  # fmt: skip
SCOPES: tuple[str, ...] = get_args(Scope)
SERVICE_SCOPE = "credits:read"
ENV_TOKEN_ID = "env"
ACCOUNT_HEADER = "Creditledger-Account"
# The contract's AccountId (schemas/common.py): a value outside it names no account.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
CHALLENGE = 'Bearer realm="creditledger"'
CUSTOMER_HOW = (
    "send a customer key as Authorization: Bearer <key> or x-api-key: <key>, or a service "
    f"token (an admin token with {SERVICE_SCOPE}) as Bearer with {ACCOUNT_HEADER}: <account_id>"
)
ADMIN_CREDENTIAL = "the admin token"
INGEST_CREDENTIAL = "the admin token or the ingest token (CREDITLEDGER_INGEST_TOKEN)"
FIND_ADMIN_TOKEN = """
SELECT token_id, scopes, revoked_at FROM admin_tokens WHERE tenant = '*' AND secret_sha256 = $1
"""
FIND_KEY = """
SELECT account_id, key_id, revoked_at, expires_at FROM api_keys WHERE secret_sha256 = $1
"""
# An account exists once the admin API registered it or the writer applied anything to it.
ACCOUNT_EXISTS = """
SELECT EXISTS (SELECT 1 FROM accounts WHERE account_id = $1)
    OR EXISTS (SELECT 1 FROM writer_accounts WHERE account_id = $1)
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
SERVICE_TOKEN = HTTPBearer(
    scheme_name="serviceToken", auto_error=False,
    description=f"An admin token with the `{SERVICE_SCOPE}` scope as `Authorization: Bearer "
    f"<token>`, reading the account named by the `{ACCOUNT_HEADER}` header",
)  # fmt: skip
ADMIN_TOKEN = HTTPBearer(
    scheme_name="adminToken", auto_error=False,
    description="The admin token (CREDITLEDGER_ADMIN_TOKEN) or a minted `cl_adm_…` token",
)  # fmt: skip
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(CUSTOMER_KEY)]
HeaderDoc = Annotated[str | None, Security(CUSTOMER_KEY_HEADER)]
ServiceDoc = Annotated[HTTPAuthorizationCredentials | None, Security(SERVICE_TOKEN)]
AccountHeaderDoc = Annotated[
    str | None,
    Header(
        alias=ACCOUNT_HEADER,
        description="With a service token: the account to read (required). With a customer "
        "key: optional, and then its own account (another answers 404).",
    ),
]
AdminDoc = Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_TOKEN)]


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    key_id: str  # "" for a service token
    token_id: str | None = None  # the service token's (`env` for CREDITLEDGER_ADMIN_TOKEN)


@dataclass(frozen=True, slots=True)
class AdminCaller:
    token_id: str  # `env` for CREDITLEDGER_ADMIN_TOKEN
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def unauthenticated(detail: str, *, presented: bool) -> Problem:
    """401 with the challenge RFC 9110 asks for (RFC 6750's `invalid_token` when a credential
    was presented and refused)."""
    challenge = CHALLENGE + (', error="invalid_token"' if presented else "")
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": challenge})


def presented_secret(request: Request) -> str | None:
    """The one credential presented, as Bearer or x-api-key (the same value in both is one);
    400 `conflicting-credentials` when they carry two different values: which one was meant
    cannot be told, and taking either would hide the mistake. One pass over the raw headers
    (the balance and check reads run this on every request)."""
    found: str | None = None
    for name, raw in request.scope["headers"]:
        if name == b"authorization":
            value = raw.decode("latin-1")
            if value[:7].lower() != "bearer ":
                continue
            value = value[7:].strip()
        elif name == b"x-api-key":
            value = raw.decode("latin-1")
        else:
            continue
        if not value or value == found:
            continue
        if found is not None:
            raise Problem(
                400, "conflicting-credentials",
                "two different credentials in one request (Authorization: Bearer and x-api-key, "
                "or one of them twice): send one",
            )  # fmt: skip
        found = value
    return found


async def customer(
    request: Request,
    _: BearerDoc = None,
    __: HeaderDoc = None,
    ___: ServiceDoc = None,
    ____: AccountHeaderDoc = None,
) -> Caller:
    """The account a customer read reads: the key's own, or the one a service token names."""
    refuse_if_blocked(request)
    try:
        caller, _row, rate_key = await _customer(request, _key_only)
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, rate_key)
    return caller


async def customer_and_state(request: Request) -> tuple[Caller, StoredState | None]:
    """`customer`, and on a key-cache miss the key's account state read by the same statement
    (balance and check: one round trip); None when the key came from the cache or the caller
    is a service token (the caller then reads the state itself, as the routes do)."""
    refuse_if_blocked(request)
    try:
        caller, row, rate_key = await _customer(request, _key_and_state)
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, rate_key)
    stored = None if row is None else stored_state(caller.account_id, row)
    return caller, stored


KeyLookup = Callable[[asyncpg.Pool, str], Awaitable[asyncpg.Record | None]]


async def _customer(
    request: Request, lookup: KeyLookup
) -> tuple[Caller, asyncpg.Record | None, str]:
    """The caller, the row `lookup` read (None from the cache, or for a service token), and the
    name its requests are rate limited under."""
    secret = presented_secret(request)
    if not secret:
        raise unauthenticated(f"an API key is required: {CUSTOMER_HOW}", presented=False)
    well_formed = is_well_formed(secret)  # once: its checksum is most of the key check's cost
    if not well_formed and _admin_shaped(request, secret):
        return await _service_caller(request, secret), None, _admin_rate_key(secret)
    key, row = await _identify(request, secret, lookup, well_formed)
    named = named_account(request)
    if named is not None and named != key.account_id:
        raise Problem(404, "not-found", "a customer key reads only its own account")
    return Caller(key.account_id, key.key_id), row, f"key:{key.key_id}"


def _admin_shaped(request: Request, secret: str) -> bool:
    """Whether the credential is meant as an admin token (so a customer read treats it as a
    service token): the env token, or the form of a minted one."""
    expected: str | None = request.app.state.settings.admin_token
    if expected is not None and secrets.compare_digest(secret.encode(), expected.encode()):
        return True
    return secret.startswith(ADMIN_TOKEN_PREFIX)


async def _service_caller(request: Request, secret: str) -> Caller:
    """An admin token on a customer read: it needs `credits:read`, then names the account."""
    token = await _admin_token(request, secret, f"the token is not valid: {CUSTOMER_HOW}")
    if not token.allows(SERVICE_SCOPE):
        raise _lacks(SERVICE_SCOPE, "to read an account's credits")
    account_id = named_account(request)
    if account_id is None:
        raise Problem(
            400, "account-required",
            f"a service token names the account it reads: {ACCOUNT_HEADER}: <account_id>",
        )  # fmt: skip
    await _require_known(request, account_id)
    return Caller(account_id, "", token.token_id)


def named_account(request: Request) -> str | None:
    """The account `Creditledger-Account` names (None without one); 400 for a value that
    cannot be an account id, or two different ones."""
    account_id: str | None = None
    for name, raw in request.scope["headers"]:
        if name != b"creditledger-account" or not raw:
            continue
        value = raw.decode("latin-1")
        if account_id is not None and value != account_id:
            raise _bad_account_header()
        account_id = value
    if account_id is not None and not ACCOUNT_ID.fullmatch(account_id):
        raise _bad_account_header()
    return account_id


def _bad_account_header() -> Problem:
    return Problem(
        400, "account-required",
        f"{ACCOUNT_HEADER} must name one account id (1-128 of A-Z a-z 0-9 _ . : -)",
    )  # fmt: skip


async def _require_known(request: Request, account_id: str) -> None:
    """404 unless the account exists. An account never stops existing, so a known one is
    remembered (bounded) and not asked about again."""
    known = known_accounts(request)
    if known.has(account_id):
        return
    if not await request.app.state.pool.fetchval(ACCOUNT_EXISTS, account_id):
        raise Problem(404, "not-found", f"no account {account_id}")
    known.add(account_id)


async def _key_only(pool: asyncpg.Pool, digest: str) -> asyncpg.Record | None:
    return await pool.fetchrow(FIND_KEY, digest)


async def _key_and_state(pool: asyncpg.Pool, digest: str) -> asyncpg.Record | None:
    return await customer_fetchrow(pool, KEY_AND_STATE, digest)


async def _identify(
    request: Request, secret: str, lookup: KeyLookup, well_formed: bool
) -> tuple[VerifiedKey, asyncpg.Record | None]:
    """The presented key, from the cache or verified by `lookup` (then its row too, else None);
    only a key valid now is remembered. 401 before any lookup for a malformed one."""
    if not well_formed:
        raise unauthenticated(f"the API key is not valid: {CUSTOMER_HOW}", presented=True)
    digest = secret_hash(secret)
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
        raise unauthenticated(f"the API key is not valid: {CUSTOMER_HOW}", presented=True)
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
    return await admin_caller(request, ADMIN_CREDENTIAL)


async def admin_caller(request: Request, wanted: str) -> AdminCaller:
    """`admin`, its 401 naming `wanted` (what the route accepts: `INGEST_CREDENTIAL` for
    `POST /v1/events`)."""
    refuse_if_blocked(request)
    try:
        presented = presented_secret(request)
        if not presented:
            raise unauthenticated(f"{wanted} is required (Authorization: Bearer)", presented=False)
        caller = await _admin_token(request, presented, f"{wanted} is not valid")
    except Problem as refused:
        _count_guess(request, refused)
        raise
    limit_caller(request, _admin_rate_key(presented))
    return caller


def _admin_rate_key(token: str) -> str:
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _count_guess(request: Request, refused: Problem) -> None:
    if refused.status == 401:
        record_failed_auth(request)


def _lacks(scope: str, why: str = "") -> Problem:
    detail = f"this admin token lacks the scope {scope}" + (f" {why}" if why else "")
    return Problem(403, "insufficient-scope", detail, extra={"scope": scope})


def require(scope: str) -> Callable[[AdminCaller], Awaitable[AdminCaller]]:
    """A dependency: the admin caller, refused with 403 `insufficient-scope` lacking `scope`."""
    assert scope in SCOPES, scope

    async def scoped(caller: Annotated[AdminCaller, Depends(admin)]) -> AdminCaller:
        if not caller.allows(scope):
            raise _lacks(scope)
        return caller

    return scoped


async def _admin_token(request: Request, presented: str, invalid: str) -> AdminCaller:
    """The admin token presented: 403 revoked, 403 a customer key, else 401 (`invalid`)."""
    expected: str | None = request.app.state.settings.admin_token
    if expected is not None and secrets.compare_digest(presented.encode(), expected.encode()):
        return AdminCaller(ENV_TOKEN_ID, frozenset({"admin"}))
    if presented.startswith(ADMIN_TOKEN_PREFIX) and len(presented) <= 256:
        pool: asyncpg.Pool = request.app.state.pool
        row = await pool.fetchrow(FIND_ADMIN_TOKEN, secret_hash(presented))
        if row is not None:
            if row["revoked_at"] is not None:
                raise Problem(403, "token-revoked", "the admin token was revoked")
            return AdminCaller(row["token_id"], frozenset(row["scopes"]))
    if is_well_formed(presented):
        raise Problem(403, "forbidden", "a customer key cannot call admin endpoints")
    raise unauthenticated(invalid, presented=True)
