"""`CreditsMiddleware`: meter an ASGI service with credits, without a round trip per call.

Billable routes ("METHOD /path" → credits) are admitted against a short-lived local view of
each account's available credits, refreshed from the read API's `GET /v1/credits/check` at
most once per `local_view_ttl_s` and decremented locally by each admitted call's price. A call
the view cannot cover answers 402 problem+json (`insufficient-credits`, `available`) and never
reaches the app. Every billable response carries `X-Credits-Remaining`. Once the response has
completed, the usage event (final status code, measured `latency_ms`) is published in the
background: 4xx/5xx calls are refunded by the ledger, so the local view gives them back too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import httpx

from services.client import NO_RETRIES, AsyncCreditLedgerClient, ProblemError, RetryPolicy

log = logging.getLogger("creditledger.producer")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_BASE = "https://creditledger.dev/problems/"
REMAINING_HEADER = b"x-credits-remaining"


class BalanceCheckError(RuntimeError):
    """The read API could not say how many credits an account has."""


class BalanceCheck(Protocol):
    async def available(self, account_id: str, cost: int) -> int:
        """The account's available credits now (as the read API's check endpoint reports)."""
        ...


class UsageSink(Protocol):
    async def publish(self, event: dict[str, Any]) -> object: ...


class HttpBalanceCheck:
    """`BalanceCheck` over `GET /v1/credits/check?cost=N` with the account's own API key,
    through services/client (one connection pool for every account). Not retried by default
    (`retry`): the check runs on the request path, and an unknown balance fails closed."""

    def __init__(
        self,
        base_url: str,
        api_key_for_account: Callable[[str], str | None] | Mapping[str, str],
        *,
        timeout_s: float = 2.0,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy = NO_RETRIES,
    ) -> None:
        keys = api_key_for_account
        self._key_of: Callable[[str], str | None] = keys.get if isinstance(keys, Mapping) else keys
        self._base_url, self._retry = base_url, retry
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def available(self, account_id: str, cost: int) -> int:
        key = self._key_of(account_id)
        if key is None:
            raise BalanceCheckError(f"no API key known for account {account_id!r}")
        api = AsyncCreditLedgerClient(
            self._base_url, api_key=key, retry=self._retry, http=self._client
        )
        try:
            answer = await api.check(cost)  # a 402 is an answer: it says `available` too
        except ProblemError as refused:
            raise BalanceCheckError(f"credits check answered {refused.status}") from refused
        except (httpx.HTTPError, ValueError, KeyError) as error:
            raise BalanceCheckError(f"credits check failed: {error!r}") from error
        available = answer.get("available")
        if not isinstance(available, int) or isinstance(available, bool):
            raise BalanceCheckError("credits check answered without an integer `available`")
        return available

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> HttpBalanceCheck:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@dataclass
class _View:
    available: int
    expires_at: float  # time.monotonic()


class LocalBalanceView:
    """Per-account available credits, each entry valid for `ttl_s`, at most `max_accounts`
    entries (least recently used evicted)."""

    def __init__(
        self,
        check: BalanceCheck,
        ttl_s: float,
        max_accounts: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check, self.ttl_s, self.max_accounts, self.clock = check, ttl_s, max_accounts, clock
        self._views: OrderedDict[str, _View] = OrderedDict()
        self._refreshing: dict[str, asyncio.Future[int]] = {}
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self._views)

    def peek(self, account_id: str) -> int | None:
        view = self._views.get(account_id)
        return None if view is None or view.expires_at <= self.clock() else view.available

    async def current(self, account_id: str, cost: int) -> int:
        """Available credits per the view, refreshed first when absent or expired."""
        view = self._views.get(account_id)
        if view is not None and view.expires_at > self.clock():
            self._views.move_to_end(account_id)
            return view.available
        return await self._refresh(account_id, cost)

    async def _refresh(self, account_id: str, cost: int) -> int:
        running = self._refreshing.get(account_id)
        if running is not None:  # one round trip per account, however many calls wait on it
            await asyncio.shield(running)
            return self._views[account_id].available if account_id in self._views else 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._refreshing[account_id] = future
        try:
            available = await self.check.available(account_id, cost)
            self.refreshes += 1
            self._views[account_id] = _View(available, self.clock() + self.ttl_s)
            self._views.move_to_end(account_id)
            while len(self._views) > self.max_accounts:
                self._views.popitem(last=False)
            future.set_result(available)
            return available
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters see it through shield()
            raise
        finally:
            del self._refreshing[account_id]

    def spend(self, account_id: str, credits: int) -> int:
        view = self._views.get(account_id)
        if view is None:
            return 0
        view.available -= credits
        return view.available

    def give_back(self, account_id: str, credits: int) -> None:
        view = self._views.get(account_id)
        if view is not None:
            view.available += credits


class CreditsMiddleware:
    """Pure ASGI middleware: credit check before, usage event after, for billable routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        prices: Mapping[str, int],
        account_of: Callable[[Scope], str | None],
        check: BalanceCheck,
        publisher: UsageSink,
        local_view_ttl_s: float = 2.0,
        key_of: Callable[[Scope], str | None] | None = None,
        max_accounts: int = 10_000,
        max_pending_publishes: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.prices, self.account_of = app, dict(prices), account_of
        self.publisher, self.key_of = publisher, key_of
        self.view = LocalBalanceView(check, local_view_ttl_s, max_accounts, clock)
        self.max_pending_publishes = max_pending_publishes
        self._publishing: set[asyncio.Task[None]] = set()
        self.published = 0
        self.publish_errors = 0
        self.refused = 0  # answered 402

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = f"{scope['method']} {scope['path']}"
        price = self.prices.get(endpoint)
        if price is None:  # not billable: untouched
            await self.app(scope, receive, send)
            return
        await self._billable(scope, receive, send, endpoint, price)

    async def _billable(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, price: int
    ) -> None:
        started, occurred_at = time.monotonic(), datetime.now(UTC)
        account_id = self.account_of(scope)
        if account_id is None:
            await _problem(send, 401, "unauthenticated", "no account for this call", {})
            return
        try:
            available = await self.view.current(account_id, price)
        except Exception as error:  # fail closed: an unknown balance admits nothing
            log.warning("credits check for %s failed: %r", account_id, error)
            await _problem(send, 503, "unavailable", "credits cannot be checked right now", {})
            return
        if available < price:
            self.refused += 1
            detail = f"{price} credits needed, {available} available"
            extra = {"allowed": False, "available": available, "cost": price}
            headers = {"X-Credits-Remaining": str(available)}
            await _problem(send, 402, "insufficient-credits", detail, extra, headers)
            return
        remaining = self.view.spend(account_id, price)
        status = 500  # what the client sees if the app fails before it answers
        completed = False

        async def metered_send(message: Message) -> None:
            nonlocal status, completed
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != REMAINING_HEADER]
                headers.append((REMAINING_HEADER, str(remaining).encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive, metered_send)
        finally:
            if status >= 400:  # the ledger refunds 4xx/5xx: so does the local view
                self.view.give_back(account_id, price)
            event: dict[str, Any] = {
                "request_id": uuid.uuid4().hex,
                "account_id": account_id,
                "endpoint": endpoint,
                "status_code": status,
                "occurred_at": occurred_at.isoformat(),
                "credits": price,
                "latency_ms": int((time.monotonic() - started) * 1000),
            }
            key_id = self.key_of(scope) if self.key_of is not None else None
            if key_id is not None:
                event["key_id"] = key_id
            if not completed:
                log.info("%s: response not completed, published with status %s", endpoint, status)
            await self._publish_in_background(event)

    async def _publish_in_background(self, event: dict[str, Any]) -> None:
        if len(self._publishing) >= self.max_pending_publishes:
            # Kafka is slow: the response has gone already, so this request's task carries the
            # wait instead of the heap (no usage is dropped, memory stays bounded).
            await self._publish(event)
            return
        task = asyncio.create_task(self._publish(event))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, event: dict[str, Any]) -> None:
        try:
            await self.publisher.publish(event)
            self.published += 1
        except Exception:
            self.publish_errors += 1
            log.exception("usage event not published: %s", event)

    @property
    def pending_publishes(self) -> int:
        return len(self._publishing)

    async def drain(self) -> None:
        """Wait for every background publish started so far (call before closing the sink)."""
        while self._publishing:
            await asyncio.wait(list(self._publishing))


async def _problem(
    send: Send,
    status: int,
    slug: str,
    detail: str,
    extra: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> None:
    body = {**extra, "type": PROBLEM_BASE + slug, "title": slug.replace("-", " "),
            "status": status, "detail": detail}  # fmt: skip
    raw = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(raw)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": raw})
