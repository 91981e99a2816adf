"""Service tokens against the real writer and projector: an admin token with `credits:read` reads
any account named by `Creditledger-Account` exactly as that account's own key does, on every
customer read, through the fast path and through the routes alike; and the refusals around it
(400 without the header or with two credentials, 404 unknown account, 403 without the scope or
revoked, 401 with `WWW-Authenticate`).

Two apps share one pool: `fast` as served (balance and check answered by fastreads.py) and
`plain` without that middleware (every request through FastAPI's routes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from services.api.app import create_app
from services.api.fastreads import FastReads
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import BASE_URL, Customer, admin_headers, key_headers, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
PROBLEM = "/problems/"
ACCOUNT = "Creditledger-Account"
CHALLENGE = 'Bearer realm="creditledger"'
COSTS = (0, 1, 69, 70, 71, 500, 10_000)
# Fixed ranges where the default would be "until now" (which moves between two requests).
SPAN = {"from": "2026-11-01", "to": "2026-11-30"}
READ_PARAMS = {"/v1/credits/check": {"cost": "1"}, "/v1/credits/activity": SPAN, "/v1/usage": SPAN}


@dataclass
class Stack:
    driver: Driver
    fast: httpx.AsyncClient
    plain: httpx.AsyncClient
    app: FastAPI
    settings: Settings


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=30)


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    settings = namespace.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        fast = create_app(settings, pipeline.pool, pipeline.producer)
        plain = create_app(settings, pipeline.pool, pipeline.producer)
        plain.user_middleware = [m for m in plain.user_middleware if m.cls is not FastReads]  # type: ignore[comparison-overlap]
        async with _client(fast) as fast_http, _client(plain) as plain_http:
            yield Stack(driver, fast_http, plain_http, fast, settings)


async def mint(stack: Stack, *scopes: str) -> dict[str, str]:
    minted = await stack.fast.post(
        "/v1/admin/tokens", json={"name": "svc", "scopes": list(scopes)},
        headers=admin_headers(stack.settings),
    )  # fmt: skip
    assert minted.status_code == 201, minted.text
    body: dict[str, str] = minted.json()
    return body


def service(token: str, account_id: str | None) -> dict[str, str]:
    return {**key_headers(token), **({ACCOUNT: account_id} if account_id else {})}


async def load(stack: Stack) -> tuple[Customer, Customer]:
    """acme: 100 granted, 30 used, 10 held (available 60); rival: 7 granted, 9 used (owes 2);
    ghost: never registered, 5 granted over Kafka (an account from its first event)."""
    acme = await new_customer(stack.fast, stack.settings, "acme", "Acme Corp")
    rival = await new_customer(stack.fast, stack.settings, "rival")
    await stack.driver.commands(
        grant("acme", 100, "acme-sub", bucket="subscription", expires_at="2099-01-01T00:00:00Z"),
        grant("rival", 7, "rival-gift", bucket="gift"),
        grant("ghost", 5, "ghost-grant"),
    )
    await stack.driver.settled()
    await stack.driver.usage(
        usage("acme", "a1", credits=20, occurred_at=at(3)),
        usage("acme", "a2", credits=10, occurred_at=at(4)),
        usage("rival", "r1", credits=9, occurred_at=at(3)),
    )
    await stack.driver.settled()
    await stack.driver.commands(
        command("hold", "acme", "acme-hold", hold_id="h1", amount=10,
                expires_at="2099-01-01T00:00:00Z", occurred_at=at(5)),
    )  # fmt: skip
    await stack.driver.settled()
    return acme, rival


def customer_reads(app: FastAPI) -> list[str]:
    """Every customer GET route without a path parameter (a future one is walked too)."""
    found = set()
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or "{" in str(route.path) or "GET" not in (route.methods or ()):
            continue
        if any(d.call and d.call.__name__ == "customer" for d in dependant.dependencies):
            found.add(str(route.path))
    return sorted(found)


def _same(one: httpx.Response, other: httpx.Response, what: str) -> None:
    assert one.status_code == other.status_code, (what, one.text, other.text)
    assert _timeless(one.json()) == _timeless(other.json()), what
    for header in ("x-credits-remaining", "x-ledger-seq", "x-ledger-stale", "content-type"):
        assert one.headers.get(header) == other.headers.get(header), (what, header)


def _timeless(body: Any) -> Any:
    """The answer but explain's `asOf` when none was asked: the instant each call was read."""
    return {k: v for k, v in body.items() if k != "asOf"} if isinstance(body, dict) else body


async def test_a_service_token_checks_two_accounts(stack: Stack) -> None:
    acme, rival = await load(stack)
    token = (await mint(stack, "credits:read"))["secret"]
    for who in (acme, rival):
        own = await stack.fast.get("/v1/credits/balance", headers=who.headers)
        assert own.status_code == 200, own.text
        for http in (stack.fast, stack.plain):
            as_service = await http.get(
                "/v1/credits/balance", headers=service(token, who.account_id)
            )
            _same(as_service, own, f"balance of {who.account_id}")
            for cost in COSTS:
                url = f"/v1/credits/check?cost={cost}"
                mine = await stack.fast.get(url, headers=who.headers)
                theirs = await http.get(url, headers=service(token, who.account_id))
                _same(theirs, mine, f"{url} for {who.account_id}")
    acme_balance = (await stack.fast.get("/v1/credits/balance", headers=acme.headers)).json()
    rival_balance = (await stack.fast.get("/v1/credits/balance", headers=rival.headers)).json()
    assert (acme_balance["available"], acme_balance["reserved"]) == (60, 10)
    assert (rival_balance["balance"], rival_balance["overage"]) == (-2, 2)
    allowed = await stack.fast.get("/v1/credits/check?cost=60", headers=service(token, "acme"))
    refused = await stack.fast.get("/v1/credits/check?cost=61", headers=service(token, "acme"))
    assert allowed.status_code == 200 and refused.status_code == 402, refused.text

    ghost = await stack.fast.get("/v1/credits/balance", headers=service(token, "ghost"))
    assert ghost.status_code == 200, ghost.text
    assert ghost.json()["accountId"] == "ghost" and ghost.json()["balance"] == 5


async def test_every_customer_read_answers_as_the_accounts_own_key(stack: Stack) -> None:
    acme, rival = await load(stack)
    token = (await mint(stack, "admin"))["secret"]  # `admin` implies credits:read
    reads = customer_reads(stack.app)
    expected = {
        "/v1/credits/balance", "/v1/credits/check", "/v1/credits/ledger", "/v1/credits/grants",
        "/v1/credits/activity", "/v1/usage", "/v1/account/summary",
    }  # fmt: skip
    assert expected <= set(reads), reads
    for who in (acme, rival):
        for path in reads:
            params = READ_PARAMS.get(path, {})
            own = await stack.plain.get(path, params=params, headers=who.headers)
            assert own.status_code in (200, 402), (path, own.text)
            as_service = await stack.plain.get(
                path, params=params, headers=service(token, who.account_id)
            )
            _same(as_service, own, f"{path} of {who.account_id}")
        entries = (await stack.plain.get("/v1/credits/ledger", headers=who.headers)).json()["data"]
        assert entries and {e["account_id"] for e in entries} == {who.account_id}
        one = await stack.plain.get(
            f"/v1/credits/ledger/{entries[0]['id']}", headers=service(token, who.account_id)
        )
        assert one.status_code == 200 and one.json() == entries[0]
    # Another account's object through the service token naming the other account: 404.
    acme_entry = (await stack.plain.get("/v1/credits/ledger", headers=acme.headers)).json()
    elsewhere = await stack.plain.get(
        f"/v1/credits/ledger/{acme_entry['data'][0]['id']}", headers=service(token, "rival")
    )
    assert elsewhere.status_code == 404


def _problem(answer: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM + slug, body
    return body


async def _both(stack: Stack, path: str, headers: dict[str, str]) -> httpx.Response:
    """The same request through the fast path and the routes: the same answer."""
    fast = await stack.fast.get(path, headers=headers)
    plain = await stack.plain.get(path, headers=headers)
    _same(fast, plain, f"{path} {sorted(headers)}")
    assert fast.headers.get("www-authenticate") == plain.headers.get("www-authenticate")
    return fast


HOT_AND_ROUTED = ("/v1/credits/balance", "/v1/credits/check?cost=1", "/v1/credits/ledger")


async def test_service_token_refusals(stack: Stack) -> None:
    acme, _ = await load(stack)
    reader = await mint(stack, "credits:read")
    other = await mint(stack, "commands:read", "events:write")
    gone = await mint(stack, "credits:read")
    revoked = await stack.fast.delete(
        f"/v1/admin/tokens/{gone['tokenId']}", headers=admin_headers(stack.settings)
    )
    assert revoked.status_code == 204
    env_token = admin_headers(stack.settings)["Authorization"].removeprefix("Bearer ")
    for path in HOT_AND_ROUTED:
        _problem(await _both(stack, path, service(reader["secret"], None)), 400, "account-required")
        for bad in ("a b", "x" * 129, "acme/../rival"):
            _problem(await _both(stack, path, service(reader["secret"], bad)), 400,
                     "account-required")  # fmt: skip
        _problem(await _both(stack, path, service(reader["secret"], "nobody")), 404, "not-found")
        lacking = _problem(
            await _both(stack, path, service(other["secret"], "acme")), 403, "insufficient-scope"
        )
        assert lacking["scope"] == "credits:read"
        _problem(await _both(stack, path, service(gone["secret"], "acme")), 403, "token-revoked")
        assert (await _both(stack, path, service(env_token, "acme"))).status_code == 200
        # A customer key naming its own account is served; naming another, 404.
        own = {**acme.headers, ACCOUNT: "acme"}
        assert (await _both(stack, path, own)).status_code == 200
        _problem(await _both(stack, path, {**acme.headers, ACCOUNT: "rival"}), 404, "not-found")


async def test_one_credential_per_request_and_401_challenges(stack: Stack) -> None:
    acme, rival = await load(stack)
    reader = await mint(stack, "credits:read")
    for path in HOT_AND_ROUTED:
        two_keys = {**acme.headers, "x-api-key": rival.secret}
        _problem(await _both(stack, path, two_keys), 400, "conflicting-credentials")
        key_and_token = {"x-api-key": acme.secret, **service(reader["secret"], "acme")}
        _problem(await _both(stack, path, key_and_token), 400, "conflicting-credentials")
        same_twice = {**acme.headers, "x-api-key": acme.secret}
        assert (await _both(stack, path, same_twice)).status_code == 200
        for headers in ({}, key_headers("cl_adm_unknown"), {"x-api-key": "cl_live_nope"}):
            refused = _problem(await _both(stack, path, headers), 401, "unauthenticated")
            assert refused["detail"] and "x-api-key" in refused["detail"]
            answer = await stack.fast.get(path, headers=headers)
            assert answer.headers["www-authenticate"].startswith(CHALLENGE)
    admin_refused = await stack.fast.get("/v1/admin/tokens")
    _problem(admin_refused, 401, "unauthenticated")
    assert admin_refused.headers["www-authenticate"] == CHALLENGE
    ingest = await stack.fast.post("/v1/events", json={"events": []})
    detail = _problem(ingest, 401, "unauthenticated")["detail"]
    assert "admin token" in detail and "ingest token" in detail
    assert ingest.headers["www-authenticate"] == CHALLENGE
    conflicting = await stack.fast.get(
        "/v1/admin/tokens", headers={**admin_headers(stack.settings), "x-api-key": acme.secret}
    )
    _problem(conflicting, 400, "conflicting-credentials")
