"""Admin: the versioned price book (contract, "Price book").

`PUT /v1/admin/price-book` appends a version (201 `{version}`), `GET /v1/admin/price-book`
answers `{current, versions}`. A version is immutable, prices calls by their `occurred_at`, and
can't start in the past: `effective_at` must lie at least `max_future_skew_s` ahead of now, else
422 naming `body.effective_at`. Setting prices needs the `admin` scope; reading them
`commands:read`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request

from schemas.price_book import (
    PriceBookBody,
    StartsTooSoon,
    add_version,
    book_json,
    load_versions,
    version_json,
)
from services.api.admin_common import invalid, parse_body
from services.api.auth import admin, require
from services.api.models.admin import PriceBook, PriceVersion
from services.api.problems import problem_responses
from services.api.ratelimit import bounded_body, json_body
from services.platform.settings import Settings

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin), Depends(bounded_body)]
)
ERRORS = problem_responses(400, 401, 403, 413, 422, 429)


def _body_doc() -> dict[str, Any]:
    schema = PriceBookBody.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.put(
    "/price-book",
    status_code=201,
    response_model=PriceVersion,
    operation_id="setPriceBook",
    summary="Append a version of the price book, in force from its `effective_at`",
    dependencies=[Depends(require("admin"))],
    responses=ERRORS,
    openapi_extra=_body_doc(),
)
async def set_price_book(request: Request) -> dict[str, Any]:
    """Append a version of the price book; it prices calls from `effective_at` on."""
    body = _parse(json_body(await bounded_body(request)))
    settings: Settings = request.app.state.settings
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        try:
            version = await add_version(conn, body, settings.max_future_skew_s)
        except StartsTooSoon as too_soon:
            raise invalid(("body.effective_at", str(too_soon))) from too_soon
    return {"version": version.version, **version_json(version)}


@router.get(
    "/price-book",
    response_model=PriceBook,
    operation_id="getPriceBook",
    summary="The version in force now and every version set",
    dependencies=[Depends(require("commands:read"))],
    responses=ERRORS,
)
async def get_price_book(request: Request) -> dict[str, Any]:
    """The version in force now (version 0: the built-in book) and every version set."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        versions = await load_versions(conn)
    return book_json(versions, datetime.now(UTC))


def _parse(data: Any) -> PriceBookBody:
    if not isinstance(data, dict):
        raise invalid(("body", "must be a JSON object"))
    return parse_body(PriceBookBody, data)  # instants as ISO-8601 text, 422 naming each field
