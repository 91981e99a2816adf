"""Unknown and repeated query parameters answer 400 naming them, on every route, before any
credential or database is looked at (strict_query.py); declared ones pass. The balance read goes
through the fast path's middleware first (fastreads.py), which hands such requests to the routes.
The live API's every operation: the attack `unknown-parameters` (tests/attacks/inputs.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Query

from services.api.app import create_app
from services.platform.settings import Settings


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    unused: Any = None
    app = create_app(Settings.model_construct(admin_token="t"), unused, unused)
    later = APIRouter()  # a router added after the app is made gets the rule too

    @later.get("/later", operation_id="later", summary="a route added later")
    def _later(tags: list[str] = Query(default=[]), one: int = 0) -> dict[str, int]:  # noqa: B008
        return {"tags": len(tags), "one": one}

    app.include_router(later)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/v1/credits/ledger?type=debit", ["type"]),
        ("/v1/credits/grants?credit_id=g1&limit=5", ["credit_id"]),
        ("/v1/usage?period=daily", ["period"]),
        ("/v1/credits/balance?asof=2026-01-01", ["asof"]),
        ("/v1/credits/check?cost=1&endpont=x", ["endpont"]),
        ("/v1/admin/commands/c1?acount_id=a&zz=1", ["acount_id", "zz"]),
        ("/healthz?verbose=1", ["verbose"]),
        ("/later?two=2", ["two"]),
    ],
)
async def test_unknown_parameters_are_named(
    client: httpx.AsyncClient, url: str, named: list[str]
) -> None:
    answer = await client.get(url)  # no credential: the request is malformed whoever sends it
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["type"] == "/problems/unknown-parameter"
    assert body["parameters"] == named
    assert all(name in body["detail"] for name in named)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/v1/credits/ledger?limit=1&limit=500", ["limit"]),
        ("/v1/credits/check?cost=1&cost=99", ["cost"]),
        ("/later?one=1&one=2", ["one"]),
    ],
)
async def test_single_valued_parameters_given_twice_are_refused(
    client: httpx.AsyncClient, url: str, named: list[str]
) -> None:
    answer = await client.get(url)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "/problems/repeated-parameter"
    assert answer.json()["parameters"] == named


async def test_declared_parameters_pass(client: httpx.AsyncClient) -> None:
    assert (await client.get("/later?tags=a&tags=b&one=3")).json() == {"tags": 2, "one": 3}
    # Declared, so past the rule: the missing credential is what answers.
    assert (await client.get("/v1/credits/ledger?from=2026-01-01&limit=5")).status_code == 401
    assert (await client.get("/healthz")).status_code == 200


async def test_the_dashboard_page_is_exempt(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dashboard?utm_source=mail")).status_code == 200
