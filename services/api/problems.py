"""Errors as `application/problem+json` (RFC 9457) with a stable `type`; never internals.

`ProblemDetail` is the documented shape (components.schemas.Problem in the OpenAPI document);
routes declare the statuses they can answer with `problem_responses(...)`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("creditledger.api")
PROBLEM_BASE = "https://creditledger.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "malformed-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "conflict", 422: "invalid-request", 429: "rate-limited",
    500: "internal-error", 503: "unavailable",
}  # fmt: skip
_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, bad cursor, conflicting parameters)",
    401: "Missing or unknown credential",
    402: "Not enough available credits",
    403: "Revoked or expired key, or a credential of the wrong scope",
    404: "Not found (or another account's object)",
    409: "Conflict (Idempotency-Key reused or in use, existing account)",
    413: "Request body too large",
    422: "Invalid request; `errors` names the field(s) at fault when known",
    429: "Rate limited; retry after `Retry-After` seconds",
    503: "A dependency (Kafka, Postgres) is unavailable",
}


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; some problems carry extra members (e.g. 402's `available`)."""

    model_config = ConfigDict(extra="allow", title="Problem")
    type: str = Field(description="stable URI naming the kind of problem")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.status, self.slug, self.detail, self.headers = status, slug, detail, headers or {}
        self.extra: dict[str, Any] = extra or {}


def problem_response(
    status: int, slug: str, detail: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    body = {**extra, "type": PROBLEM_BASE + slug, "title": slug.replace("-", " "),
            "status": status, "detail": detail}  # fmt: skip
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries: each status answers problem+json (429 with Retry-After)."""
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": _DESCRIPTIONS[status], "content": content}
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {
                    "description": 'the challenge: `Bearer realm="creditledger"`',
                    "required": True,
                    "schema": {"type": "string"},
                }
            }
        if status == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "whole seconds to wait",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        documented[status] = entry
    return documented


def _problem_schemas() -> dict[str, Any]:
    schema = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    return {**defs, "Problem": schema}


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at this path (the router's own 405 names only the first
    route's, and a path such as `/v1/admin/tokens` has a route per method)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        if route.path and compile_path(route.path)[0].match(request.url.path):
            methods |= set(route.methods or ())
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.slug, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _TITLES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return problem_response(exc.status_code, slug, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return problem_response(422, "invalid-request", "the request is not valid", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal-error", "an internal error occurred")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated document, plus the Problem schema every error response refers to."""
        if app.openapi_schema is None:
            document = generate()
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                _problem_schemas()
            )
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
