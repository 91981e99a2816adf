"""`CreditsMiddleware` with fakes: a fake app, balance check, publisher and clock; and
`HttpBalanceCheck` (services/client underneath) over a scripted transport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from schemas.usage import UsageEvent
from services.producer.middleware import (
    BalanceCheckError,
    CreditsMiddleware,
    HttpBalanceCheck,
    Receive,
    Scope,
    Send,
)
from services.producer.publisher import encode, usage_event

PRICES = {"POST /scan": 1, "POST /deep": 5}


class FakeApp:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        self.calls.append(f"{request.method} {request.url.path}")
        body = await request.body()
        status = int(json.loads(body).get("status", 200)) if body else 200
        if status == 999:
            raise RuntimeError("the app crashed")
        response = PlainTextResponse("ok", status_code=status, headers={"x-app": "yes"})
        await response(scope, receive, send)


class FakeCheck:
    def __init__(self, available: int) -> None:
        self.balance = available
        self.calls = 0

    async def available(self, account_id: str, cost: int) -> int:
        self.calls += 1
        return self.balance


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail

    async def publish(self, event: dict[str, Any]) -> str:
        if self.fail:
            raise ConnectionError("kafka is down")
        self.events.append(event)
        return str(event["request_id"])


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def account_header(scope: Scope) -> str | None:
    return dict(scope["headers"]).get(b"x-account-id", b"").decode() or None


def metered(
    available: int, ttl_s: float = 2.0, publisher: FakePublisher | None = None
) -> tuple[CreditsMiddleware, FakeApp, FakeCheck, FakePublisher, Clock]:
    app, check, sink, clock = FakeApp(), FakeCheck(available), publisher or FakePublisher(), Clock()
    middleware = CreditsMiddleware(
        app, prices=PRICES, account_of=account_header, check=check, publisher=sink,
        local_view_ttl_s=ttl_s, clock=clock,
    )  # fmt: skip
    return middleware, app, check, sink, clock


def client(app: CreditsMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://svc",
        headers={"x-account-id": "acct_1"},
    )


async def test_a_call_the_view_cannot_cover_answers_402_without_calling_the_app() -> None:
    middleware, app, _, sink, _ = metered(available=4)
    async with client(middleware) as http:
        response = await http.post("/deep")
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Credits-Remaining"] == "4"
    body = response.json()
    assert body["type"].endswith("/insufficient-credits")
    assert (body["available"], body["status"]) == (4, 402)
    await middleware.drain()
    assert app.calls == [] and sink.events == [] and middleware.refused == 1


async def test_billable_responses_say_what_remains_and_publish_the_final_status() -> None:
    middleware, app, _, sink, _ = metered(available=10)
    async with client(middleware) as http:
        ok = await http.post("/scan")
        failed = await http.post("/deep", json={"status": 500})
        rejected = await http.post("/scan", json={"status": 422})
        deep = await http.post("/deep")
    assert [r.status_code for r in (ok, failed, rejected, deep)] == [200, 500, 422, 200]
    assert ok.headers["x-app"] == "yes"
    # 4xx/5xx are refunded by the ledger, so the local view gives their credits back
    assert [r.headers["X-Credits-Remaining"] for r in (ok, failed, rejected, deep)] == [
        "9", "4", "8", "4",
    ]  # fmt: skip
    assert middleware.view.peek("acct_1") == 4
    await middleware.drain()
    assert app.calls == ["POST /scan", "POST /deep", "POST /scan", "POST /deep"]
    assert [(e["endpoint"], e["status_code"], e["credits"]) for e in sink.events] == [
        ("POST /scan", 200, 1), ("POST /deep", 500, 5), ("POST /scan", 422, 1),
        ("POST /deep", 200, 5),
    ]  # fmt: skip
    for event in sink.events:  # each one the contract's event, as the publisher would send it
        model = UsageEvent.model_validate(event)
        assert model.account_id == "acct_1" and model.latency_ms is not None
        assert len(model.request_id) == 32
        assert json.loads(encode(usage_event(event)))["occurred_at"].endswith("Z")
    assert len({e["request_id"] for e in sink.events}) == 4
    assert middleware.published == 4 and middleware.publish_errors == 0


async def test_an_app_that_raises_is_published_as_a_500() -> None:
    middleware, _, _, sink, _ = metered(available=10)
    async with client(middleware) as http:
        response = await http.post("/scan", json={"status": 999})
    assert response.status_code == 500
    await middleware.drain()
    assert [e["status_code"] for e in sink.events] == [500]
    assert middleware.view.peek("acct_1") == 10


async def test_non_billable_routes_pass_through_untouched() -> None:
    middleware, app, check, sink, _ = metered(available=0)
    async with client(middleware) as http:
        response = await http.get("/status")
        anonymous = await http.post("/other", headers={"x-account-id": ""})
    assert (response.status_code, response.text) == (200, "ok")
    assert "X-Credits-Remaining" not in response.headers
    assert anonymous.status_code == 200
    await middleware.drain()
    assert app.calls == ["GET /status", "POST /other"]
    assert check.calls == 0 and sink.events == []


async def test_a_billable_call_without_an_account_is_refused() -> None:
    middleware, app, _, _, _ = metered(available=10)
    async with client(middleware) as http:
        response = await http.post("/scan", headers={"x-account-id": ""})
    assert response.status_code == 401
    assert app.calls == []


async def test_the_local_view_is_decremented_and_refreshed_once_per_ttl() -> None:
    middleware, _, check, _, clock = metered(available=3, ttl_s=2.0)
    async with client(middleware) as http:
        statuses = [(await http.post("/scan")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 402]
        assert check.calls == 1  # one round trip for four calls
        check.balance = 2  # the ledger moved on (e.g. a grant); the view does not know yet
        clock.now += 1.9
        assert (await http.post("/scan")).status_code == 402
        assert check.calls == 1
        clock.now += 0.2  # past the TTL: refreshed
        refreshed = await http.post("/scan")
        assert refreshed.status_code == 200
        assert refreshed.headers["X-Credits-Remaining"] == "1"
        assert check.calls == 2


async def test_a_failing_check_fails_closed() -> None:
    class DownCheck:
        async def available(self, account_id: str, cost: int) -> int:
            raise ConnectionError("read API down")

    app = FakeApp()
    middleware = CreditsMiddleware(
        app, prices=PRICES, account_of=account_header, check=DownCheck(),
        publisher=FakePublisher(),
    )  # fmt: skip
    async with client(middleware) as http:
        response = await http.post("/scan")
    assert response.status_code == 503
    assert app.calls == []


async def test_publish_errors_are_counted_and_never_reach_the_response() -> None:
    middleware, _, _, _, _ = metered(available=10, publisher=FakePublisher(fail=True))
    async with client(middleware) as http:
        response = await http.post("/scan")
    assert response.status_code == 200
    await middleware.drain()
    assert (middleware.published, middleware.publish_errors) == (0, 1)


async def test_the_local_view_is_bounded() -> None:
    app, sink = FakeApp(), FakePublisher()
    middleware = CreditsMiddleware(
        app, prices=PRICES, account_of=account_header, check=FakeCheck(5), publisher=sink,
        max_accounts=3,
    )  # fmt: skip
    async with client(middleware) as http:
        for n in range(10):
            await http.post("/scan", headers={"x-account-id": f"acct_{n}"})
    assert len(middleware.view) == 3
    await middleware.drain()
    assert len(sink.events) == 10


@pytest.mark.parametrize("fields", [{"account_id": "a b"}, {"status_code": 700}])
def test_the_publisher_refuses_what_the_contract_refuses(fields: dict[str, Any]) -> None:
    event = {"account_id": "a", "endpoint": "POST /scan", "status_code": 200, **fields}
    with pytest.raises(ValueError, match="validation error"):
        usage_event(event)


def test_the_publisher_fills_request_id_and_occurred_at() -> None:
    event = usage_event({"account_id": "a", "endpoint": "POST /scan", "status_code": 200})
    body = json.loads(encode(event))
    assert len(body["request_id"]) == 32 and body["occurred_at"].endswith("Z")
    assert set(body) == {"request_id", "account_id", "endpoint", "status_code", "occurred_at"}


def checking(*answers: httpx.Response | Exception) -> tuple[HttpBalanceCheck, list[httpx.Request]]:
    """`HttpBalanceCheck` over a scripted transport (live: tests/e2e/test_example_service)."""
    sent: list[httpx.Request] = []
    script = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        reply = script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    http = httpx.AsyncClient(base_url="http://ledger", transport=httpx.MockTransport(answer))
    return HttpBalanceCheck("http://ledger", {"acct_1": "key_1"}, client=http), sent


async def test_the_http_check_reads_available_from_200_and_402() -> None:
    refused = {"type": "/problems/insufficient-credits", "status": 402,
               "title": "insufficient credits", "detail": "no", "available": 2}  # fmt: skip
    check, sent = checking(
        httpx.Response(200, json={"allowed": True, "available": 9}),
        httpx.Response(402, json=refused, headers={"content-type": "application/problem+json"}),
    )
    assert await check.available("acct_1", 1) == 9
    assert await check.available("acct_1", 5) == 2
    assert [dict(r.url.params) for r in sent] == [{"cost": "1"}, {"cost": "5"}]
    assert {r.headers["authorization"] for r in sent} == {"Bearer key_1"}
    await check.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"status": 500}),
        httpx.Response(401, json={"status": 401}),
        httpx.Response(200, json={"allowed": True}),
        httpx.Response(200, text="not json"),
        httpx.ConnectError("refused"),
    ],
)
async def test_the_http_check_says_balance_check_error_for_anything_else(
    answer: httpx.Response | Exception,
) -> None:
    check, sent = checking(answer)
    with pytest.raises(BalanceCheckError):
        await check.available("acct_1", 1)
    assert len(sent) == 1  # not retried: the check is on the request path, it fails closed
    with pytest.raises(BalanceCheckError, match="no API key"):
        await check.available("acct_unknown", 1)
    await check.aclose()
