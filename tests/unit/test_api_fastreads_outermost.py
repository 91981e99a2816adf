"""The fast reads run ahead of every middleware (services/api/app.py `_App`), so they do the
metrics middleware's and the server-error middleware's work themselves: the same request id,
counts, latency and access line, and for an unexpected error the same 500 (then raised)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.api.fastreads import FastReads
from services.api.metrics import MetricsMiddleware
from services.platform import logs
from tests.unit.test_api_fastreads import FakeDb, _apps


class _Failing(FakeDb):
    async def fetch(self, sql: str, accounts: list[str]) -> list[dict[str, Any]]:
        raise RuntimeError("the database went away")

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        raise RuntimeError("the database went away")


async def _get(app: Any, url: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(url, headers=headers)


def test_the_fast_reads_are_the_outermost_layer() -> None:
    fast, plain = _apps(FakeDb())
    assert isinstance(fast.build_middleware_stack(), FastReads)
    assert not isinstance(plain.build_middleware_stack(), FastReads)
    layers, app = [], fast.build_middleware_stack()
    while hasattr(app, "app"):
        layers.append(type(app))
        app = app.app
    assert layers.count(FastReads) == 1 and MetricsMiddleware in layers


def test_an_unexpected_error_answers_and_counts_as_the_routes_do() -> None:
    async def run() -> None:
        db = _Failing()
        headers = {"x-api-key": db.key("rich"), "X-Request-Id": "req-500"}
        fast, plain = _apps(db)
        for url in ("/v1/credits/balance", "/v1/credits/check?cost=1"):
            ours, theirs = await _get(fast, url, headers), await _get(plain, url, headers)
            assert ours.status_code == theirs.status_code == 500
            assert ours.headers.multi_items() == theirs.headers.multi_items()
            assert ours.content == theirs.content
        for app in (fast, plain):
            labels = {"method": "GET", "route": "/v1/credits/check", "status": "500"}
            sample = app.state.metrics.registry.get_sample_value
            assert sample("creditledger_http_requests_total", labels) == 1

    asyncio.run(run())


def test_an_answer_carries_the_request_id_and_its_access_line(monkeypatch: Any) -> None:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr("services.api.metrics.access_line", lines.append)
    seen: list[str | None] = []
    real = FakeDb.fetch

    async def fetch(self: FakeDb, sql: str, accounts: list[str]) -> list[dict[str, Any]]:
        seen.append(logs.REQUEST_ID.get())
        return await real(self, sql, accounts)

    monkeypatch.setattr(FakeDb, "fetch", fetch)

    async def run() -> None:
        db = FakeDb()
        secret = db.key("rich")
        fast, _ = _apps(db, access_log=True)
        await _get(fast, "/v1/credits/balance", {"x-api-key": secret})  # the key, cached
        answer = await _get(
            fast, "/v1/credits/balance", {"x-api-key": secret, "X-Request-Id": "r-1"}
        )
        assert answer.status_code == 200
        assert answer.headers.multi_items()[-1] == ("x-request-id", "r-1")
        assert lines[-1]["request_id"] == "r-1" and lines[-1]["route"] == "/v1/credits/balance"
        assert lines[-1]["status"] == 200 and lines[-1]["path"] == "/v1/credits/balance"
        assert logs.REQUEST_ID.get() is None
        assert seen == [None]  # a batch of reads runs as no one request

    asyncio.run(run())
