"""The sans-I/O core both clients drive: one `Call` describes a request and how to read its
answer; `exchange()` turns it into HTTP requests and sleeps (retries, backoff) and the result.

The sync and async clients only carry out what `exchange()` yields (`Send`: make this request;
`Sleep`: wait this long) and send back the response or the transport error, so the decisions
(auth headers, what to retry, how long to wait, `credits_remaining`, errors) live here once.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx

from services.client.errors import ProblemError, retry_after_s

T = TypeVar("T")
Auth = Literal["customer", "admin", "ingest", "none"]
Params = Mapping[str, str | int | bool]
REMAINING_HEADER = "x-credits-remaining"
LEDGER_SEQ_HEADER = "x-ledger-seq"
ACCOUNT_HEADER = "Creditledger-Account"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "creditledger-python/0.1"
# Transport errors raised before the request left: retrying them can never do a thing twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ClientConfigError(ValueError):
    """The client lacks what a call needs (an API key, an admin token, an account)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One endpoint call. `retry_safe`: doing it twice does nothing more than once (reads,
    deletes, admin writes under an Idempotency-Key); unsafe calls are retried only when the
    request surely did not arrive (connect errors) or was refused unprocessed (429)."""

    method: str
    path: str
    auth: Auth
    parse: Callable[[Answer], T]
    params: Params = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_safe: bool = True
    ok_statuses: frozenset[int] = frozenset()  # non-2xx statuses that are answers, not errors
    account: str | None = None  # a customer read's account, over the client's (service tokens)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts; exponential backoff with full jitter; 429 waits `Retry-After`."""

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is not waited for: it is raised
    retry_statuses: frozenset[int] = frozenset({500, 502, 503, 504})
    jitter: Callable[[float], float] = field(default=lambda top: random.uniform(0, top))

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based)."""
        top = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return self.jitter(top)


NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Send:
    method: str
    url: str
    params: Params
    headers: dict[str, str]
    json: Any


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Send | Sleep
Exchange = Generator[Step, httpx.Response | None, T]


class Session:
    """What both clients share: credentials, the retry policy and what the answers said."""

    def __init__(
        self,
        *,
        api_key: str | None,
        account: str | None,
        admin_token: str | None,
        ingest_token: str | None,
        retry: RetryPolicy,
    ) -> None:
        self.api_key, self.account, self.admin_token = api_key, account, admin_token
        self.ingest_token, self.retry = ingest_token, retry
        self.credits_remaining: int | None = None  # from the last X-Credits-Remaining seen
        self.ledger_seq: int | None = None  # from the last X-Ledger-Seq seen

    def account_id(self, given: str | None) -> str:
        """An admin call's account: the one given, else the client's `account`."""
        account = given or self.account
        if not account:
            raise ClientConfigError("no account_id given and the client has no `account`")
        return account

    def auth_headers(self, auth: Auth, account: str | None = None) -> dict[str, str]:
        """`account`: the one a customer read names (else the client's `account`)."""
        if auth == "none":
            return {}
        if auth == "customer":
            if self.api_key:
                # A key reads its own account; naming another one answers 404, as it should.
                named = {ACCOUNT_HEADER: account} if account else {}
                return {"Authorization": f"Bearer {self.api_key}", **named}
            account = account or self.account
            if self.admin_token and account:  # a service token reading one account
                return {"Authorization": f"Bearer {self.admin_token}", ACCOUNT_HEADER: account}
            raise ClientConfigError(
                "a customer read needs api_key=, or admin_token= (scope credits:read) and account="
            )
        token = (self.ingest_token or self.admin_token) if auth == "ingest" else self.admin_token
        if not token:
            raise ClientConfigError(f"this call needs an admin token ({auth})")
        return {"Authorization": f"Bearer {token}"}

    def observe(self, response: httpx.Response) -> None:
        """Every answer, errors and retried ones included, updates what it reports."""
        self.credits_remaining = _int_header(response, REMAINING_HEADER, self.credits_remaining)
        self.ledger_seq = _int_header(response, LEDGER_SEQ_HEADER, self.ledger_seq)

    def exchange(self, call: Call[T]) -> Exchange[T]:
        """Yields `Send` (answer: the response, or the transport error thrown in) and `Sleep`
        (answer: None); returns the parsed result or raises `ProblemError`."""
        request = Send(
            call.method, call.path, dict(call.params),
            {"User-Agent": USER_AGENT, **self.auth_headers(call.auth, call.account),
             **call.headers},
            call.body,
        )  # fmt: skip
        attempt = 0
        while True:
            attempt += 1
            try:
                response = yield request
            except httpx.TransportError as error:
                wait = self._after_error(call, attempt, error)
                if wait is None:
                    raise
                yield Sleep(wait)
                continue
            assert response is not None
            self.observe(response)
            wait = self._after_answer(call, attempt, response)
            if wait is None:
                return _finish(call, response)
            yield Sleep(wait)

    def _after_error(
        self, call: Call[Any], attempt: int, error: httpx.TransportError
    ) -> float | None:
        if attempt >= self.retry.max_attempts:
            return None
        if call.retry_safe or isinstance(error, NOT_SENT):
            return self.retry.backoff_s(attempt)
        return None

    def _after_answer(
        self, call: Call[Any], attempt: int, response: httpx.Response
    ) -> float | None:
        if attempt >= self.retry.max_attempts:
            return None
        status = response.status_code
        if status == 429:  # refused before anything was done: safe for every call
            wait = retry_after_s(response.headers.get("retry-after"))
            if wait is None:
                return self.retry.backoff_s(attempt)
            return wait if wait <= self.retry.max_retry_after_s else None
        if status in self.retry.retry_statuses and call.retry_safe:
            return self.retry.backoff_s(attempt)
        return None


def _finish(call: Call[T], response: httpx.Response) -> T:
    answer = Answer(response.status_code, response.headers, response.content)
    if response.is_success or response.status_code in call.ok_statuses:
        return call.parse(answer)
    raise ProblemError.from_answer(response.status_code, response.headers, response.content)


def _int_header(response: httpx.Response, name: str, previous: int | None) -> int | None:
    raw = response.headers.get(name)
    if raw is None:
        return previous
    try:
        return int(raw)
    except ValueError:
        return previous


# --- helpers for the endpoint descriptions --------------------------------------------------

Instant = datetime | str


def instant(value: Instant) -> str:
    """ISO-8601 with an offset (the API's form); a naive datetime is refused (UTC everywhere)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a datetime without a timezone is ambiguous: pass an aware one (UTC)")
    return value.isoformat()


def query(**values: object) -> dict[str, str | int | bool]:
    """Query parameters, leaving out the ones not given (the API refuses unknown ones, and an
    empty value is not absent); `from_` is sent as `from`; datetimes as ISO-8601."""
    params: dict[str, str | int | bool] = {}
    for name, value in values.items():
        if value is None:
            continue
        wire = name.rstrip("_")
        if isinstance(value, datetime):
            params[wire] = instant(value)
        elif isinstance(value, bool):
            params[wire] = "true" if value else "false"
        elif isinstance(value, int | str):
            params[wire] = value
        elif isinstance(value, list | tuple | set | frozenset):
            params[wire] = ",".join(str(v) for v in value)
        else:
            raise TypeError(f"{name}: cannot send {type(value).__name__} as a query parameter")
    return params


def body(**values: object) -> dict[str, Any]:
    """A JSON body of the given fields (None: not sent); datetimes as ISO-8601."""
    return {
        name: instant(value) if isinstance(value, datetime) else value
        for name, value in values.items()
        if value is not None
    }


def idempotency(key: str | None) -> dict[str, str]:
    """An admin write's Idempotency-Key: the caller's, else a fresh one. Made once per call, so
    every retry of it carries the same key and the API applies it once."""
    return {IDEMPOTENCY_HEADER: key or str(uuid.uuid4())}
