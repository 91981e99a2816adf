"""Dashboard sign-in links: an admin mints a short-lived link, the page trades it once for a key.

`POST /v1/admin/accounts/{account_id}/dashboard-sessions` (scope `keys:write`: it hands out a
credential of the account) answers `{url, expiresAt}`; the url is `<origin>/dashboard#session=
<token>`. The token sits in the URL *fragment*, which browsers never send, so it reaches no
server or proxy log and no `Referer`. The page reads it, drops it from the address bar and trades
it once at `POST /dashboard/session-exchange` for a customer key of the account (`dsn_…`,
in `api_keys`, expiring with the link), which it sends as Bearer like a pasted key: every
customer read, the fast paths included, accepts it through the one key check in auth.py, and
after `expiresAt` answers 401 `session-expired`.

Why a key and not an HttpOnly cookie: the reads authenticate by `Authorization` only, and a
cookie would need CSRF defences and a second credential path in auth.py. Why trade at all:
the link is single-use, so a link copied from history or a screen share after sign-in signs
nobody in. Only SHA-256 digests of the token and of the key are stored. The exchange sits
beside the page (`/dashboard/…`), not under `/v1/`: it takes no credential (the token is one),
and its answer is never cached (`Cache-Control: no-store`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import DASHBOARD_SESSION_KEY_PREFIX, admin, require
from services.api.keys import new_secret, secret_hash
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import record_failed_auth, refuse_if_blocked
from services.platform.settings import Settings

router = APIRouter(tags=["dashboard"])
TOKEN_PREFIX = "cl_dsl_"  # a dashboard sign-in link's token
AccountPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]

ACCOUNT_EXISTS = "SELECT 1 FROM accounts WHERE account_id = $1"
CREATE_SESSION = """
INSERT INTO dashboard_sessions (account_id, session_id, token_sha256, expires_at)
VALUES ($1, $2, $3, $4)
"""
# One statement decides the trade: a token used once, or expired, matches no row.
TRADE_SESSION = """
UPDATE dashboard_sessions SET exchanged_at = now(), key_id = $2
WHERE token_sha256 = $1 AND exchanged_at IS NULL AND expires_at > now()
RETURNING account_id, expires_at
"""
CREATE_KEY = """
INSERT INTO api_keys (account_id, key_id, secret_sha256, expires_at) VALUES ($1, $2, $3, $4)
"""


class DashboardSession(BaseModel):
    url: str = Field(description="the sign-in link; its token is in the fragment, single-use")
    expires_at: datetime = Field(alias="expiresAt")
    model_config = ConfigDict(populate_by_name=True)


class SessionExchange(BaseModel):
    token: str = Field(min_length=1, max_length=128, description="the link's `session` value")
    model_config = ConfigDict(extra="forbid")


class SessionKey(BaseModel):
    account_id: str = Field(alias="accountId")
    key_id: str = Field(alias="keyId")
    secret: str = Field(description="send as `Authorization: Bearer <secret>` until expiresAt")
    expires_at: datetime = Field(alias="expiresAt")
    model_config = ConfigDict(populate_by_name=True)


@router.post(
    "/v1/admin/accounts/{account_id}/dashboard-sessions",
    status_code=201,
    response_model=DashboardSession,
    response_model_by_alias=True,
    operation_id="createDashboardSession",
    summary="A short-lived sign-in link to the dashboard for one account",
    dependencies=[Depends(admin), Depends(require("keys:write"))],
    responses=problem_responses(401, 403, 404, 422, 429),
)
async def create_dashboard_session(account_id: AccountPath, request: Request) -> DashboardSession:
    pool: asyncpg.Pool = request.app.state.pool
    settings: Settings = request.app.state.settings
    if await pool.fetchval(ACCOUNT_EXISTS, account_id) is None:
        raise Problem(404, "not-found", f"no account {account_id}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.dashboard_session_ttl_s)
    session_id = "ds_" + secrets.token_hex(8)
    await pool.execute(CREATE_SESSION, account_id, session_id, secret_hash(token), expires_at)
    origin = (settings.public_url or str(request.base_url)).rstrip("/")
    return DashboardSession(url=f"{origin}/dashboard#session={token}", expires_at=expires_at)


@router.post(
    "/dashboard/session-exchange",
    status_code=201,
    response_model=SessionKey,
    response_model_by_alias=True,
    operation_id="exchangeDashboardSession",
    summary="Trade a dashboard link's token, once, for a key that expires with the link",
    responses=problem_responses(400, 401, 422, 429),
)
async def exchange_dashboard_session(
    body: SessionExchange, request: Request, response: Response
) -> SessionKey:
    response.headers["Cache-Control"] = "no-store"
    refuse_if_blocked(request)  # a guessed token counts as a failed sign-in, as a key would
    pool: asyncpg.Pool = request.app.state.pool
    key_id = DASHBOARD_SESSION_KEY_PREFIX + secrets.token_hex(8)
    secret = new_secret()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(TRADE_SESSION, secret_hash(body.token), key_id)
        if row is None:
            record_failed_auth(request)
            raise Problem(
                401,
                "unauthenticated",
                "the sign-in link is not valid, was used or expired",
                headers={"WWW-Authenticate": 'Bearer realm="creditledger"'},
            )
        account_id: str = row["account_id"]
        expires_at: datetime = row["expires_at"]
        await conn.execute(CREATE_KEY, account_id, key_id, secret_hash(secret), expires_at)
    return SessionKey(account_id=account_id, key_id=key_id, secret=secret, expires_at=expires_at)
