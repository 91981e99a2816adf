"""Request bounds: token-bucket rate limits, a cap on request bodies, and JSON bodies parsed
within bounds (`json_body`: nesting at most `MAX_JSON_DEPTH`, strings Postgres can store).

Rate limits are kept in process memory, per process: with N API processes behind a balancer a
caller gets up to N times `api_rate_limit_per_s`. The buckets are an LRU of bounded size, so a
flood of distinct callers (client IPs) cannot grow memory; an evicted caller starts again with a
full bucket, which only ever errs towards letting a request through.

Who is limited: a customer key by its key_id, the admin token by the token's hash, and failed
authentication attempts (401: a credential that is unknown, i.e. a guess) by client IP
(`request.client.host`; a proxy's X-Forwarded-For is not trusted, and the server is run with
uvicorn's proxy headers off), so guessing keys is throttled on top of the checksum that refuses
mistyped ones. Failed attempts have the same burst as requests but refill at most
`FAILED_AUTH_MAX_PER_S`: past the burst, an address guesses once a second, not 50 times.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from services.api.problems import Problem
from services.platform.settings import Settings

MAX_TRACKED_CALLERS = 100_000
MAX_JSON_DEPTH = 32  # no contract document nests deeper than 3; Python's parser dies near 1000
FAILED_AUTH_MAX_PER_S = 1.0
BODY_CHUNK_LIMIT_HINT = "the request body is larger than {limit} bytes"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per caller: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, max_callers: int = MAX_TRACKED_CALLERS) -> None:
        self.rate, self.burst, self.max_callers = rate, burst, max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def peek(self, caller: str, now: float | None = None) -> float:
        """Seconds until `caller` has a token (0 when it has one now); takes nothing, and
        tracks no caller it has not charged (theirs would be a full bucket: every request's
        client address is peeked at, only a failed attempt is charged)."""
        if caller not in self._buckets:
            return 0.0 if self.burst >= 1 else 1 / self.rate
        bucket = self._refilled(caller, time.monotonic() if now is None else now)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate

    def take(self, caller: str, now: float | None = None) -> float:
        """Take a token: 0 when granted, else the seconds until one is there (nothing taken)."""
        bucket = self._refilled(caller, time.monotonic() if now is None else now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, caller: str, now: float) -> _Bucket:
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        return bucket


@dataclass
class Limiters:
    requests: TokenBuckets  # per authenticated caller
    failed_auth: TokenBuckets  # per client IP, failed authentications only


def limiters(request: Request) -> Limiters:
    """The app's limiters, made on first use from its settings (no app.py wiring needed)."""
    state = request.app.state
    found: Limiters | None = getattr(state, "rate_limiters", None)
    if found is None:
        settings: Settings = state.settings
        rate, burst = settings.api_rate_limit_per_s, settings.api_rate_limit_burst
        failed_rate = min(rate, FAILED_AUTH_MAX_PER_S)
        found = Limiters(TokenBuckets(rate, burst), TokenBuckets(failed_rate, burst))
        state.rate_limiters = found
    return found


def retry_after_seconds(wait_s: float) -> int:
    """Retry-After is whole seconds, at least 1."""
    return max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else 1


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(wait_s: float, what: str) -> Problem:
    retry_after = retry_after_seconds(wait_s)
    return Problem(
        429, "rate-limited", f"{what}; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )  # fmt: skip


def limit_caller(request: Request, caller: str) -> None:
    """Charge one request to an authenticated caller; 429 with Retry-After when out of tokens."""
    wait_s = limiters(request).requests.take(caller)
    if wait_s > 0:
        _count_rejection(request, "caller")
        raise _too_many(wait_s, "too many requests for this credential")


def refuse_if_blocked(request: Request) -> None:
    """Before authenticating: a client IP out of failed-attempt tokens is refused at once."""
    wait_s = limiters(request).failed_auth.peek(client_ip(request))
    if wait_s > 0:
        _count_rejection(request, "failed_auth")
        raise _too_many(wait_s, "too many failed authentication attempts from this address")


def record_failed_auth(request: Request) -> None:
    limiters(request).failed_auth.take(client_ip(request))


def _count_rejection(request: Request, kind: str) -> None:
    counter = getattr(request.app.state, "rate_limited_counter", None)
    if counter is not None:
        counter.labels(kind).inc()


async def bounded_body(request: Request) -> bytes:
    """The request body, refused with 413 past `api_max_body_bytes` before it is all read:
    first by Content-Length, then by counting the stream (chunked bodies have no length)."""
    cached: bytes | None = getattr(request.state, "bounded_body", None)
    if cached is not None:
        return cached
    limit: int = request.app.state.settings.api_max_body_bytes
    too_large = Problem(413, "payload-too-large", BODY_CHUNK_LIMIT_HINT.format(limit=limit))
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "malformed-request", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    request.state.bounded_body = body
    return body


def json_body(raw: bytes) -> Any:
    """The body as JSON: 400 when it is not JSON or nests deeper than `MAX_JSON_DEPTH` (which
    Python's parser would meet with a RecursionError, a 500), 422 when a string holds what
    Postgres text and jsonb cannot (U+0000, or a lone surrogate such as "\\ud800")."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(400, "malformed-request", "the body is not valid JSON") from error
    except RecursionError:
        raise _too_deep() from None
    refused = _unstorable(document)
    if refused is not None:
        raise refused
    return document


def _too_deep() -> Problem:
    return Problem(400, "malformed-request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")


def _unstorable(document: Any) -> Problem | None:
    """Why a parsed document is refused (nested too deep, or a string that cannot be stored),
    or None. Iterative, so no depth can overflow the stack."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return _too_deep()
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str) and not _storable_text(value):
            message = "strings must be valid Unicode without U+0000"
            return Problem(422, "invalid-request", f"body: {message}",
                           extra={"errors": [{"field": "body", "message": message}]})  # fmt: skip
    return None


def _storable_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
