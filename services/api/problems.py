"""Errors as `application/problem+json` (RFC 9457) with a stable `type`; never internals.

`ProblemDetail` is the documented shape (components.schemas.Problem in the OpenAPI document);
routes declare the statuses they can answer with `problem_responses(...)`.

`PROBLEM_TYPES` is the one registry of problem types: every `type` is `/problems/<slug>`, a URI
relative to the API's own address (RFC 9457 3.1.1: resolved against the answer's URL), so it
resolves on whichever host serves the API, and `GET /problems/<slug>` (routes_problems.py)
serves a page describing it, made from this registry. A new slug goes here first
(tests/unit/test_problem_types.py finds every slug the API's code raises).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("creditledger.api")
PROBLEM_BASE = "/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "malformed-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "conflict", 422: "invalid-request", 429: "rate-limited",
    500: "internal-error", 503: "unavailable",
}  # fmt: skip
_DESCRIPTIONS = {
    400: "Malformed request (an unknown or repeated query parameter, bad JSON, bad cursor, "
    "conflicting parameters)",
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


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    summary: str  # one line
    what_to_do: str


PROBLEM_TYPES: dict[str, ProblemType] = {
    "malformed-request": ProblemType(
        400, "The request is malformed: not JSON, a bad Content-Length, conflicting parameters "
        "(page with offset, cursor with page or offset).",
        "Fix the request as `detail` says; sending it again unchanged fails again."),
    "unknown-parameter": ProblemType(
        400, "A query parameter the operation does not take: `parameters` names each one. A "
        "misspelt filter is refused rather than ignored, so no answer looks filtered when it "
        "is not.",
        "Check the names against the OpenAPI document (/docs): query parameters are "
        "snake_case (`covering_date`, `group_by`, `min_seq`)."),
    "repeated-parameter": ProblemType(
        400, "A single-valued query parameter given more than once: `parameters` names each "
        "one.", "Send each of them once."),
    "invalid-cursor": ProblemType(
        400, "A `cursor` or `next_page` token this API did not make, or made for other filters.",
        "Pass back the token of the previous page unchanged, with the same filters; start "
        "again from the first page otherwise."),
    "unauthenticated": ProblemType(
        401, "No credential, or one this API does not know.",
        "Customer reads take an API key (`Authorization: Bearer <key>` or `x-api-key`); admin "
        "routes take an admin token as `Authorization: Bearer <token>`."),
    "insufficient-credits": ProblemType(
        402, "Not enough available credit for the call (`available` says how much there is; "
        "`owed` what would be owed beyond the credit limit).",
        "Grant credit (or raise the credit limit), or make a cheaper call."),
    "forbidden": ProblemType(
        403, "A credential of the wrong kind for this route (a customer key on an admin route, "
        "an admin token on a customer read without `credits:read`).",
        "Use the credential the route takes."),
    "conflicting-credentials": ProblemType(
        400, "Two different credentials in one request (an `Authorization: Bearer` and an "
        "`x-api-key`, or either twice): the API will not guess which one is meant.",
        "Send one credential."),
    "account-required": ProblemType(
        400, "A service token (an admin token with `credits:read`) on a customer read names no "
        "account, or one that cannot be an account id, in `Creditledger-Account`.",
        "Name the account: `Creditledger-Account: <account_id>`."),
    "session-expired": ProblemType(
        401, "The dashboard sign-in session expired.",
        "Open a new sign-in link (`POST /v1/admin/accounts/{account_id}/dashboard-sessions`) "
        "or paste an API key."),
    "key-revoked": ProblemType(
        403, "The API key was revoked.", "Use another key of the account, or issue one."),
    "key-expired": ProblemType(
        403, "The API key expired (after a rotation's overlap, or its `expires_at`).",
        "Use the key that replaced it, or issue one."),
    "token-revoked": ProblemType(
        403, "The admin token was revoked.", "Use another admin token."),
    "insufficient-scope": ProblemType(
        403, "The admin token lacks the scope the route needs (`scope` names it).",
        "Use a token minted with that scope (`POST /v1/admin/tokens`)."),
    "not-found": ProblemType(
        404, "No such object, or one of another account (never told apart).",
        "Check the id and the credential's account."),
    "method-not-allowed": ProblemType(
        405, "The path does not take this method; `Allow` lists those it takes.",
        "Use one of the methods in `Allow`."),
    "conflict": ProblemType(
        409, "The request conflicts with what exists (an account with another name, a command "
        "id in several accounts).", "Read what exists, then decide; `detail` says what."),
    "idempotency-key-in-use": ProblemType(
        409, "A request with this `Idempotency-Key` is still being processed.",
        "Retry after a moment: the first request's answer will be replayed."),
    "idempotency-key-reused": ProblemType(
        409, "This `Idempotency-Key` was used before with another request body or path.",
        "Use a new key for a new request; the same key only to retry the same request."),
    "payload-too-large": ProblemType(
        413, "The request body is over the API's limit (`CREDITLEDGER_API_MAX_BODY_BYTES`).",
        "Send less per request (HTTP ingest: at most 1,000 events)."),
    "invalid-request": ProblemType(
        422, "The request is well formed but not valid; `errors` [{`field`, `message`}] names "
        "each field at fault when known.", "Fix the fields named."),
    "rate-limited": ProblemType(
        429, "Too many requests from this caller.",
        "Wait `Retry-After` seconds, then retry."),
    "internal-error": ProblemType(
        500, "An unexpected error on the server; nothing about it is disclosed.",
        "Retry later; report it if it persists."),
    "unavailable": ProblemType(
        503, "A dependency (Kafka, Postgres) did not answer in time; nothing was published.",
        "Retry later; a write with an `Idempotency-Key` is safe to retry."),
    "not-ready": ProblemType(
        503, "`/readyz`: the process is not ready; `failing` and `checks` name what is wrong.",
        "Wait, or fix what `checks` names."),
    "error": ProblemType(
        400, "Another HTTP error, as `status` and `detail` say.", "Do as `detail` says."),
}  # fmt: skip


def problem_type_uri(slug: str) -> str:
    return PROBLEM_BASE + slug


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


def _document_errors(document: dict[str, Any]) -> None:
    """Every operation may answer 400: an unknown query parameter is refused on every route
    (strict_query.py), including routes that declare no 400 of their own. FastAPI's default
    422 (a JSON `HTTPValidationError`) is not what the handler answers: problem+json."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("400", problem_responses(400)[400])
            invalid = responses.get("422")
            if invalid is not None and PROBLEM_MEDIA_TYPE not in invalid.get("content", {}):
                responses["422"] = problem_responses(422)[422]
    if "#/components/schemas/HTTPValidationError" not in json.dumps(document["paths"]):
        schemas = document["components"]["schemas"]
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)


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
            _document_errors(document)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
