"""The two hottest reads, `GET /v1/credits/balance` and `GET /v1/credits/check`, answered
without FastAPI's routing, dependency injection and response validation.

The routes stay declared in `routes_credits.py` (the OpenAPI document, and every request this
path does not take); this middleware answers the well-formed requests of those two paths with
the same functions: `auth.customer_and_state` (refusals, rate limits, the key cache, the key
check and the read in one statement), `reads.balance` (the answer) and `problem_response` (every
refusal, 402 included). A service token (an admin token naming `Creditledger-Account`) goes
through the same `customer_and_state`, which resolves it to the account it names and reads
nothing itself; the state is then read as for a cached key (`StateBatches`: the reads of one
event-loop pass in one statement, each account read as itself as by `read_state_as_customer`,
the routes' own read), so its answers are the routes' too.

A request it does not take whole goes to FastAPI untouched: another method or path, a query
parameter it does not know or given twice, or a value it would not accept as FastAPI would
(FastAPI then answers, 422 for instance). It decides that from the
query string alone, before any side effect (a lookup, a rate-limit token), so a request is
never half-handled here and then handled again there.

It runs outermost (the generic layers cost more than the read's own Python), and does what
they would for its answers: the request id, the metrics and access line of `MetricsMiddleware`
(the route named in `scope["route"]` as the router would, so `creditledger_http_requests`
counts them under the same label), and an unexpected error answered by the server-error
handler (500 problem+json), as from a route.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from schemas.common import MAX_CREDITS
from services.api.auth import customer, customer_and_state
from services.api.metrics import RequestRecords
from services.api.problems import Problem, problem_response
from services.api.reads.balance import (
    StoredState,
    balance_answer,
    check_answer,
)
from services.api.reads.freshness import BALANCE, MAX_SEQ, wait_if_asked
from services.api.reads.state_batches import StateBatches
from services.api.request_id import request_id_from
from services.platform.logs import REQUEST_ID
from services.platform.settings import Settings

BALANCE_PATH = "/v1/credits/balance"
CHECK_PATH = "/v1/credits/check"
MAX_ENDPOINT_CHARS = 256  # as the route's `endpoint` Query
_JSON = (b"content-type", b"application/json")
Params = dict[str, str]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def _int_param(text: str | None, maximum: int) -> int | None:
    """A canonical decimal in [0, maximum], else None (the route then judges it)."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    number = int(text)
    return number if number <= maximum else None


def _query(scope: Scope, known: frozenset[str]) -> Params | None:
    """The query's parameters, when each is known and given once (as Starlette decodes it:
    `parse_qsl`, which a query without `%` or `+` needs only for splitting)."""
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
    else:
        pairs = [_pair(part) for part in text.split("&") if part]
    params: Params = {}
    for name, value in pairs:
        if name not in known or name in params:
            return None
        params[name] = value
    return params


def _pair(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name, value


class _Parsed:
    __slots__ = ("cost", "endpoint", "min_seq")

    def __init__(self, min_seq: int | None, cost: int = 0, endpoint: str | None = None) -> None:
        self.min_seq, self.cost, self.endpoint = min_seq, cost, endpoint


def _parse_balance(params: Params) -> _Parsed | None:
    raw = params.get("min_seq")
    min_seq = None if raw is None else _int_param(raw, MAX_SEQ)
    if raw is not None and min_seq is None:
        return None
    return _Parsed(min_seq)


def _parse_check(params: Params) -> _Parsed | None:
    parsed = _parse_balance(params)
    cost = _int_param(params.get("cost"), MAX_CREDITS)
    endpoint = params.get("endpoint")
    if parsed is None or cost is None:
        return None
    if endpoint is not None and not 1 <= len(endpoint) <= MAX_ENDPOINT_CHARS:
        return None
    parsed.cost, parsed.endpoint = cost, endpoint
    return parsed


async def _state(request: Request, min_seq: int | None) -> tuple[str, StoredState]:
    """Authenticate, wait for `min_seq` (bounded) when asked, and read the account's state."""
    if min_seq:  # the read comes after the wait: not in the statement that checks the key
        caller = await customer(request)
        await wait_if_asked(request, BALANCE, caller.account_id, min_seq)
        return caller.account_id, await _batches(request).read(caller.account_id)
    caller, stored = await customer_and_state(request)
    if stored is None:  # the key came from the cache
        stored = await _batches(request).read(caller.account_id)
    return caller.account_id, stored


def _batches(request: Request) -> StateBatches:
    """The app's batches of state reads, made on first use (again if its pool was replaced)."""
    state = request.app.state
    pool = state.pool
    found: StateBatches | None = getattr(state, "state_batches", None)
    if found is None or found.pool is not pool:
        found = state.state_batches = StateBatches(pool)
    return found


def _headers(body: bytes, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-length", str(len(body)).encode()), _JSON]
    for name, value in headers.items():
        raw_name = _HEADER_NAMES.get(name)
        if raw_name is None:  # the answers' few names, each encoded once
            raw_name = _HEADER_NAMES[name] = name.lower().encode()
        raw.append((raw_name, value.encode()))
    return raw


_HEADER_NAMES: dict[str, bytes] = {}


async def _balance(request: Request, parsed: _Parsed) -> Answer:
    account_id, stored = await _state(request, parsed.min_seq)
    body, headers = balance_answer(account_id, stored, parsed.min_seq, datetime.now(UTC))
    rendered = orjson.dumps(body)
    return 200, _headers(rendered, headers), rendered


async def _check(request: Request, parsed: _Parsed) -> Answer:
    _, stored = await _state(request, parsed.min_seq)
    answer = check_answer(stored, parsed.cost, parsed.endpoint, parsed.min_seq, datetime.now(UTC))
    if not answer.allowed:
        raise Problem(402, "insufficient-credits", answer.detail, answer.headers, answer.body)
    rendered = orjson.dumps(answer.body)
    return 200, _headers(rendered, answer.headers), rendered


Handler = Callable[[Request, _Parsed], Awaitable[Answer]]
_PATHS: dict[str, tuple[frozenset[str], Callable[[Params], _Parsed | None], Handler]] = {
    BALANCE_PATH: (frozenset({"min_seq"}), _parse_balance, _balance),
    CHECK_PATH: (frozenset({"cost", "endpoint", "min_seq"}), _parse_check, _check),
}


class FastReads:
    """Pure ASGI: answers the well-formed balance and check reads, passes everything else on.

    It runs ahead of every other layer (`app.FastAPI.build_middleware_stack`), so it does
    itself what they would do for these answers: the request id (`X-Request-Id`, the log
    context), the metrics and the access line as `MetricsMiddleware` records them, and an
    unexpected error answered by the same server-error handler (then raised, as it raises)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._routes: dict[str | None, BaseRoute] | None = None
        self._records: RequestRecords | None = None

    def _route(self, path: str) -> BaseRoute | None:
        """The route the router would name in `scope["route"]` (the metrics' label)."""
        if self._routes is None:
            self._routes = {
                context.path: context.original_route
                for context in iter_route_contexts(self.api.routes)
                if context.path in _PATHS and "GET" in (context.methods or ())
            }
        return self._routes.get(path)

    def _recorded(self) -> RequestRecords:
        if self._records is None:
            settings: Settings = self.api.state.settings
            self._records = RequestRecords(self.api.state.metrics, settings.access_log)
        return self._records

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = _PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if taken is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        known, parse, handle = taken
        params = _query(scope, known)
        parsed = None if params is None else parse(params)
        route = self._route(scope["path"])
        if parsed is None or route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id
        scope["route"] = route
        responded = False
        bound = REQUEST_ID.set(rid)
        try:
            status, headers, body = await _response(Request(scope, receive), handle, parsed)
            headers.append((b"x-request-id", rid.encode()))  # last, as MetricsMiddleware adds it
            responded = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except BaseException as error:
            REQUEST_ID.reset(bound)
            self._recorded().record(
                scope, rid, status if responded else 500, time.perf_counter() - started
            )
            if isinstance(error, Exception) and not responded:
                await self._server_error(error, scope, receive, send)
            raise
        REQUEST_ID.reset(bound)
        self._recorded().record(scope, rid, status, time.perf_counter() - started)

    async def _server_error(
        self, error: Exception, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The 500 the server-error middleware sends for an error that escapes before an
        answer began (counted 500 above, as MetricsMiddleware counts it; without
        `X-Request-Id`, which that middleware sits outside); it raises `error` again, swallowed
        here and raised by the caller."""
        handler = None
        for key, value in self.api.exception_handlers.items():
            if key in (500, Exception):
                handler = value
        answering = ServerErrorMiddleware(_Raising(error), handler=handler, debug=self.api.debug)
        with contextlib.suppress(Exception):
            await answering(scope, receive, send)


async def _response(request: Request, handle: Handler, parsed: _Parsed) -> Answer:
    """The answer, or the refusal as problem+json."""
    try:
        return await handle(request, parsed)
    except Problem as refused:
        extra: dict[str, Any] = refused.extra
        response = problem_response(
            refused.status, refused.slug, refused.detail, refused.headers, **extra
        )
        return response.status_code, response.raw_headers, bytes(response.body)


class _Raising:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise self.error
