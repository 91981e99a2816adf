"""Admin: webhook endpoints (contract, "Webhooks"; delivery: services/webhooks/README.md).

`POST /v1/admin/webhooks` {url, events, description} registers an endpoint and answers its
signing secret, once (it is kept to sign, never answered again); `GET` lists the live ones;
`DELETE …/{id}` stops deliveries to it (pending ones are cancelled); `GET …/{id}/deliveries`
pages its deliveries, newest first, each with its tries (status code, latency, error).
Only http(s) URLs; private, loopback and link-local addresses are refused with 422 unless
`webhooks_allow_private`. Writing needs the scope `webhooks:write`, reading `webhooks:read`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from schemas.ledger import AlertTypeName
from services.api.admin_common import invalid, parse_body
from services.api.auth import admin, require
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import bounded_body, json_body
from services.platform.settings import Settings
from services.webhooks.signing import new_secret
from services.webhooks.urls import MAX_URL_CHARS, RefusedUrl, check_registration

router = APIRouter(
    prefix="/v1/admin", tags=["webhooks"], dependencies=[Depends(admin), Depends(bounded_body)]
)
WRITE = [Depends(require("webhooks:write"))]
READ = [Depends(require("webhooks:read"))]
ERRORS = (400, 401, 403, 413, 422, 429)
EndpointPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^we_[0-9a-f]+$")]

CREATE_ENDPOINT = """
INSERT INTO webhook_endpoints (endpoint_id, url, events, description, secret)
VALUES ($1, $2, $3, $4, $5) RETURNING created_at
"""
LIST_ENDPOINTS = """
SELECT endpoint_id, url, events, description, created_at FROM webhook_endpoints
WHERE deleted_at IS NULL ORDER BY created_at, endpoint_id
"""
DELETE_ENDPOINT = """
UPDATE webhook_endpoints SET deleted_at = now()
WHERE endpoint_id = $1 AND deleted_at IS NULL RETURNING endpoint_id
"""
CANCEL_PENDING = """
UPDATE webhook_deliveries SET status = 'cancelled', next_try_at = NULL, finished_at = now()
WHERE endpoint_id = $1 AND status = 'pending'
"""
ENDPOINT_EXISTS = "SELECT 1 FROM webhook_endpoints WHERE endpoint_id = $1"
# Newest first; the cursor is the last row's (created_at, account_id, event_id).
PAGE_DELIVERIES = """
SELECT account_id, event_id, event_type, status, tries, next_try_at, created_at, finished_at
FROM webhook_deliveries
WHERE endpoint_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, account_id, event_id) < ($2, $3, $4))
ORDER BY created_at DESC, account_id DESC, event_id DESC
LIMIT $5
"""
ATTEMPTS_OF = """
SELECT account_id, event_id, try, status_code, latency_ms, error, attempted_at, next_try_at
FROM webhook_attempts
WHERE endpoint_id = $1 AND (account_id, event_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
ORDER BY try
"""


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)]
    events: Annotated[list[AlertTypeName], Field(max_length=32)] = Field(
        default_factory=list, description="alert types to receive; empty or absent: every type"
    )
    description: Annotated[str, Field(max_length=500)] = ""


class Webhook(CamelModel):
    id: str
    url: str
    events: list[str] = Field(description="alert types it receives; empty: every type")
    description: str
    created_at: datetime


class CreatedWebhook(Webhook):
    secret: str = Field(description="signs every delivery (Creditledger-Signature); shown once")


class WebhookList(CamelModel):
    data: list[Webhook]


class Attempt(CamelModel):
    try_: int = Field(alias="try", description="1 for the first try")
    status_code: int | None = Field(description="the HTTP status; null when no answer came")
    latency_ms: int
    error: str | None
    attempted_at: datetime
    next_try_at: datetime | None = Field(description="when the next try was scheduled")


class WebhookDelivery(CamelModel):
    event_id: str = Field(description="the webhook's `id`, the same on every try")
    event_type: str
    account_id: str
    status: str = Field(description="pending, delivered, failed (gave up) or cancelled")
    tries: int
    next_try_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    attempts: list[Attempt]


class DeliveryPage(CamelModel):
    data: list[WebhookDelivery]
    has_more: bool
    next_cursor: str | None


def _body_doc() -> dict[str, Any]:
    schema = NewWebhook.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/webhooks",
    status_code=201,
    response_model=CreatedWebhook,
    operation_id="createWebhook",
    summary="Register a webhook endpoint (its secret is shown once)",
    dependencies=WRITE,
    responses=problem_responses(*ERRORS),
    openapi_extra=_body_doc(),
)
async def create_webhook(request: Request) -> CreatedWebhook:
    body = _parse(json_body(await bounded_body(request)))
    settings: Settings = request.app.state.settings
    try:
        await check_registration(body.url, settings.webhooks_allow_private)
    except RefusedUrl as refused:
        raise invalid(("body.url", str(refused))) from refused
    except UnicodeError as error:
        # A name no resolver can encode: check_registration refuses those first; this keeps
        # any it missed a 422 rather than a 500.
        raise invalid(("body.url", f"the URL's host is not valid: {error}")) from error
    endpoint_id, secret = "we_" + secrets.token_hex(8), new_secret()
    events = sorted(set(body.events))
    pool: asyncpg.Pool = request.app.state.pool
    created_at = await pool.fetchval(
        CREATE_ENDPOINT, endpoint_id, body.url, events, body.description, secret
    )
    return CreatedWebhook(
        id=endpoint_id, url=body.url, events=events, description=body.description,
        created_at=created_at, secret=secret,
    )  # fmt: skip


@router.get(
    "/webhooks",
    response_model=WebhookList,
    operation_id="listWebhooks",
    summary="The registered webhook endpoints (without their secrets)",
    dependencies=READ,
    responses=problem_responses(*ERRORS),
)
async def list_webhooks(request: Request) -> WebhookList:
    pool: asyncpg.Pool = request.app.state.pool
    rows = await pool.fetch(LIST_ENDPOINTS)
    return WebhookList(data=[_webhook(row) for row in rows])


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    operation_id="deleteWebhook",
    summary="Stop delivering to a webhook endpoint (its pending deliveries are cancelled)",
    dependencies=WRITE,
    responses=problem_responses(*ERRORS, 404),
)
async def delete_webhook(webhook_id: EndpointPath, request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(DELETE_ENDPOINT, webhook_id) is None:
            raise Problem(404, "not-found", f"no webhook endpoint {webhook_id}")
        await conn.execute(CANCEL_PENDING, webhook_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    operation_id="listWebhookDeliveries",
    summary="An endpoint's deliveries, newest first, each with its tries",
    dependencies=READ,
    responses=problem_responses(*ERRORS, 404),
)
async def list_deliveries(
    webhook_id: EndpointPath,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DeliveryPage:
    after = _decode_cursor(cursor)
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        if await conn.fetchval(ENDPOINT_EXISTS, webhook_id) is None:
            raise Problem(404, "not-found", f"no webhook endpoint {webhook_id}")
        rows = await conn.fetch(PAGE_DELIVERIES, webhook_id, *after, limit + 1)
        page, has_more = rows[:limit], len(rows) > limit
        attempts = await conn.fetch(
            ATTEMPTS_OF, webhook_id, [r["account_id"] for r in page], [r["event_id"] for r in page]
        )
    tries: dict[tuple[str, str], list[Attempt]] = {}
    for a in attempts:
        tries.setdefault((a["account_id"], a["event_id"]), []).append(_attempt(a))
    data = [_delivery(r, tries.get((r["account_id"], r["event_id"]), [])) for r in page]
    next_cursor = _encode_cursor(page[-1]) if has_more else None
    return DeliveryPage(data=data, has_more=has_more, next_cursor=next_cursor)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        id=row["endpoint_id"], url=row["url"], events=list(row["events"]),
        description=row["description"], created_at=row["created_at"],
    )  # fmt: skip


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        try_=row["try"], status_code=row["status_code"], latency_ms=row["latency_ms"],
        error=row["error"], attempted_at=row["attempted_at"], next_try_at=row["next_try_at"],
    )  # fmt: skip


def _delivery(row: asyncpg.Record, attempts: list[Attempt]) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row["event_id"], event_type=row["event_type"], account_id=row["account_id"],
        status=row["status"], tries=row["tries"], next_try_at=row["next_try_at"],
        created_at=row["created_at"], finished_at=row["finished_at"], attempts=attempts,
    )  # fmt: skip


def _encode_cursor(row: asyncpg.Record) -> str:
    position = [row["created_at"].isoformat(), row["account_id"], row["event_id"]]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[datetime | None, str | None, str | None]:
    if cursor is None:
        return (None, None, None)
    try:
        created_at, account_id, event_id = json.loads(base64.urlsafe_b64decode(cursor))
        return (datetime.fromisoformat(created_at), str(account_id), str(event_id))
    except (ValueError, TypeError, binascii.Error) as error:
        raise Problem(400, "malformed-request", "the cursor is not valid") from error


def _parse(data: Any) -> NewWebhook:
    if not isinstance(data, dict):
        raise invalid(("body", "must be a JSON object"))
    return parse_body(NewWebhook, data)  # instants as ISO-8601 text, 422 naming each field
