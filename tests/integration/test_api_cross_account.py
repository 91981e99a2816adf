"""Tenant isolation and authentication over HTTP, against the real writer and projector.

Two accounts, A and B, each with grants, usage, a refund and a hold, all through Kafka. With B's
key every customer endpoint is walked with A's object ids, request ids and cursors: single
objects answer 404, lists hold only B's data (no A id, no A amount). The customer routes are
enumerated from the app, so a new one fails this test until a probe for it is added here.

Also: no key 401; a malformed key (bad checksum) 401 without touching the database; a revoked
key 403; a customer key on every admin route 403. The admin token on a customer route is a
service token (auth.py): without `Creditledger-Account` naming the account it reads, 400.
Every error is problem+json (`type`, `title`, `status`, `detail`) and names no internals.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from services.api.app import create_app
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import BASE_URL, Customer, admin_headers, key_headers, new_customer
from tests.attacks.auth import numbers_in
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
INTERNALS = ("Traceback", "asyncpg", "SELECT", "postgres", "Postgres")
A, B = "acct_alpha", "acct_bravo"
# A's amounts are large and distinctive, B's small: any A figure in a B answer is a leak.
A_GRANT, A_GIFT, A_USE, A_USE2, A_HOLD = 100_003, 70_009, 6_007, 4_001, 50_021


class CountingPool:
    """The app's pool, counting every use (to prove a malformed key never reaches the DB)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool, self.uses = pool, 0

    def __getattr__(self, name: str) -> Any:
        self.uses += 1
        return getattr(self._pool, name)


@dataclass
class World:
    http: httpx.AsyncClient
    app: FastAPI
    pool: CountingPool
    settings: Settings
    a: Customer
    b: Customer
    a_ids: set[str] = field(default_factory=set)  # every id of A's: must never reach B
    a_numbers: set[int] = field(default_factory=set)  # every figure of A's ≥ 1000
    a_entry_ids: list[str] = field(default_factory=list)
    a_ledger_cursor: str = ""
    a_grants_cursor: str = ""


@pytest.fixture
async def world(namespace: Settings) -> AsyncIterator[World]:
    settings = namespace.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        app = create_app(settings, pipeline.pool, pipeline.producer)
        pool = CountingPool(pipeline.pool)
        app.state.pool = pool
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30) as http:
            a = await new_customer(http, settings, A)
            b = await new_customer(http, settings, B)
            world = World(http, app, pool, settings, a, b)
            await _load(driver)
            await _learn_a(world)
            yield world


async def _load(driver: Driver) -> None:
    await driver.commands(
        grant(A, A_GRANT, "alpha-grant-sub", bucket="subscription", source="alpha-invoice",
              expires_at="2027-06-01T00:00:00Z"),
        grant(A, A_GIFT, "alpha-grant-gift", bucket="gift", name="alpha-gift-name"),
        grant(B, 20, "bravo-grant", bucket="purchased", source="bravo-invoice"),
        grant(B, 9, "bravo-grant-gift", bucket="gift"),
    )  # fmt: skip
    await driver.settled()
    await driver.usage(
        usage(A, "alpha-req-1", credits=A_USE, endpoint="POST /v1/alpha/scan",
              occurred_at=at(1)),
        usage(A, "alpha-req-2", credits=A_USE2, endpoint="POST /v1/alpha/scan",
              occurred_at=at(2)),
        usage(B, "bravo-req-1", credits=3, occurred_at=at(1)),
        usage(B, "bravo-req-2", credits=2, occurred_at=at(3)),
    )  # fmt: skip
    await driver.settled()
    await driver.commands(
        command("refund", A, "alpha-refund", request_id="alpha-req-1", reason="alpha-reason"),
        command("hold", A, "alpha-hold-cmd", hold_id="alpha-hold", amount=A_HOLD,
                expires_at="2027-01-01T00:00:00Z"),
        command("refund", B, "bravo-refund", request_id="bravo-req-1", reason="bravo"),
        command("hold", B, "bravo-hold-cmd", hold_id="bravo-hold", amount=4,
                expires_at="2027-01-01T00:00:00Z"),
    )  # fmt: skip
    await driver.settled()


async def _learn_a(world: World) -> None:
    """A's ids, figures and cursors, read with A's own key (which also proves A has data)."""
    a = world.a.headers
    ledger = (await world.http.get("/v1/credits/ledger", headers=a)).json()["data"]
    assert {e["reason"] for e in ledger} >= {"grant", "consume", "refund", "hold"}, ledger
    world.a_entry_ids = [e["id"] for e in ledger]
    world.a_ids |= {A, world.a.key_id, world.a.secret, *world.a_entry_ids}
    world.a_ids |= {"alpha-grant-sub", "alpha-grant-gift", "alpha-req-1", "alpha-req-2",
                    "alpha-refund", "alpha-hold", "alpha-invoice", "alpha-gift-name",
                    "alpha-reason", "/v1/alpha/scan"}  # fmt: skip
    balance = (await world.http.get("/v1/credits/balance", headers=a)).json()
    assert balance["reserved"] == A_HOLD
    for body in (ledger, balance):
        world.a_numbers |= {n for n in numbers_in(body) if n >= 1000}
    assert {A_GRANT, A_GIFT, A_USE, A_HOLD} <= world.a_numbers
    page = (await world.http.get("/v1/credits/ledger", params={"limit": 2}, headers=a)).json()
    world.a_ledger_cursor = page["nextCursor"]
    grants = await world.http.get("/v1/credits/grants", params={"limit": 1}, headers=a)
    world.a_grants_cursor = grants.json()["nextPage"]
    assert world.a_ledger_cursor and world.a_grants_cursor


def assert_problem(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM, what
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), (what, body)
    assert body["status"] == status, what
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail")), what
    for word in INTERNALS:
        assert word not in response.text, (what, word, response.text)
    return body


def routes(app: FastAPI, dependency: str) -> set[tuple[str, str]]:
    """(method, path) of the app's routes that depend on `dependency` (customer or admin)."""
    found = set()
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        if any(d.call.__name__ == dependency for d in dependant.dependencies if d.call):
            found |= {(method, str(route.path)) for method in route.methods or ()}
    return found


# One probe: a path (with A's ids), query params, and what B must get: 200 (B's data only) or 404.
Probe = tuple[str, dict[str, Any], int]


def customer_probes(w: World) -> dict[tuple[str, str], list[Probe]]:
    """Every customer route, walked with A's ids and cursors."""
    sub = "alpha-grant-sub"
    return {
        ("GET", "/v1/credits/balance"): [
            ("/v1/credits/balance", {}, 200),
            ("/v1/credits/balance", {"as_of": "2026-11-22T00:00:00Z"}, 200),
        ],
        ("GET", "/v1/credits/check"): [
            ("/v1/credits/check", {"cost": 1}, 200),
            ("/v1/credits/check", {"cost": 99_998}, 402),  # B's problem: B's figures only
        ],
        ("GET", "/v1/credits/activity"): [
            ("/v1/credits/activity", {}, 200),
            ("/v1/credits/activity", {"from": "2026-11-21", "to": "2026-11-22"}, 200),
        ],
        ("GET", "/v1/credits/ledger"): [
            ("/v1/credits/ledger", {}, 200),
            ("/v1/credits/ledger", {"expand": "request"}, 200),
            ("/v1/credits/ledger", {"reason": "consume,refund,hold,grant"}, 200),
            ("/v1/credits/ledger", {"limit": 2, "cursor": w.a_ledger_cursor}, 200),
            ("/v1/credits/ledger", {"page": 1, "limit": 500}, 200),
            ("/v1/credits/ledger", {"offset": 0}, 200),
        ],
        ("GET", "/v1/credits/ledger/{entry_id}"): [
            *[(f"/v1/credits/ledger/{e}", {}, 404) for e in w.a_entry_ids],
            ("/v1/credits/ledger/alpha-req-1", {}, 404),
        ],
        ("GET", "/v1/credits/grants"): [
            ("/v1/credits/grants", {}, 200),
            (
                "/v1/credits/grants",
                {"include_archived": "true", "include_ledgers": "true", "include_balance": "true"},
                200,
            ),
            ("/v1/credits/grants", {"limit": 1, "next_page": w.a_grants_cursor}, 200),
            ("/v1/credits/grants", {"covering_date": "2026-12-01"}, 200),
        ],
        ("GET", "/v1/credits/grants/{grant_id}"): [
            (f"/v1/credits/grants/{sub}", {}, 404),
            (f"/v1/credits/grants/{sub}", {"include_ledgers": "true"}, 404),
            ("/v1/credits/grants/alpha-grant-gift", {"include_balance": "true"}, 404),
        ],
        ("GET", "/v1/usage"): [
            ("/v1/usage", {"group_by": group}, 200) for group in ("endpoint", "day", "month")
        ],
        ("GET", "/v1/account/summary"): [
            ("/v1/account/summary", {"period": period}, 200)
            for period in ("daily", "monthly", "yearly")
        ],
        ("GET", "/v1/credits/balance/explain"): [
            ("/v1/credits/balance/explain", {}, 200),
            (
                "/v1/credits/balance/explain",
                {"as_of": "2026-11-22T00:00:00Z", "by": "occurred"},
                200,
            ),
        ],
        ("GET", "/v1/account/settings"): [("/v1/account/settings", {}, 200)],
        ("GET", "/v1/account/alerts"): [("/v1/account/alerts", {"days": 90}, 200)],
        ("GET", "/v1/credits/balance/daily"): [("/v1/credits/balance/daily", {"days": 366}, 200)],
    }


def assert_no_a(w: World, response: httpx.Response, what: str) -> None:
    text = response.text
    for leaked in w.a_ids:
        assert leaked not in text, f"{what}: A's {leaked!r} in B's answer {text}"
    numbers = set(numbers_in(response.json()))
    assert not numbers & w.a_numbers, f"{what}: A's figures {numbers & w.a_numbers} in {text}"
    assert A not in json.dumps(dict(response.headers)), what


async def test_b_never_sees_a_on_any_customer_route(world: World) -> None:
    w = world
    probes = customer_probes(w)
    assert set(probes) == routes(w.app, "customer"), "a customer route has no probe here"
    for (_, _template), cases in probes.items():
        for path, params, status in cases:
            what = f"GET {path} {params}"
            response = await w.http.get(path, params=params, headers=w.b.headers)
            if status == 200:
                assert response.status_code == 200, f"{what}: {response.text}"
            else:
                assert_problem(response, status, what)
            assert_no_a(w, response, what)
    # B's lists really are B's: its own ids come back (the walk above was not vacuous).
    ledger = (await w.http.get("/v1/credits/ledger", headers=w.b.headers)).json()["data"]
    assert {e["account_id"] for e in ledger} == {B}
    assert {e["reason"] for e in ledger} == {"grant", "consume", "refund", "hold"}
    grants = (await w.http.get("/v1/credits/grants", headers=w.b.headers)).json()["data"]
    assert {g["id"] for g in grants} == {"bravo-grant", "bravo-grant-gift"}
    # And A still reaches its own objects by the same ids (the 404s were about ownership).
    mine = await w.http.get(f"/v1/credits/ledger/{w.a_entry_ids[0]}", headers=w.a.headers)
    assert mine.status_code == 200
    assert (await w.http.get("/v1/credits/grants/alpha-grant-sub", headers=w.a.headers)).is_success


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: A if m.group(0) == "{account_id}" else "x1", path)


async def _each_route(
    w: World, which: str, headers: dict[str, str], check: Callable[[httpx.Response, str], None]
) -> None:
    for method, path in sorted(routes(w.app, which)):
        url = _fill(path).replace("/v1/credits/check", "/v1/credits/check?cost=1")
        body: dict[str, Any] | None = {} if method == "POST" else None
        response = await w.http.request(method, url, json=body, headers=headers)
        check(response, f"{method} {url}")


async def test_keys_missing_malformed_revoked_and_of_the_wrong_scope(world: World) -> None:
    w = world
    b_secret = w.b.secret
    flipped = b_secret[:-1] + ("A" if b_secret[-1] != "A" else "B")  # the checksum no longer fits
    revoked = await w.http.post(f"/v1/admin/accounts/{B}/keys", headers=admin_headers(w.settings))
    revoked_secret, revoked_id = revoked.json()["secret"], revoked.json()["keyId"]
    gone = await w.http.delete(
        f"/v1/admin/accounts/{B}/keys/{revoked_id}", headers=admin_headers(w.settings)
    )
    assert gone.status_code == 204
    unknown = "cl_live_" + "0" * 30  # right length, wrong checksum
    cases: list[tuple[str, dict[str, str], int]] = [
        ("no key", {}, 401),
        ("empty bearer", {"Authorization": "Bearer "}, 401),
        ("bad checksum", key_headers(flipped), 401),
        ("bad checksum in x-api-key", {"x-api-key": flipped}, 401),
        ("zero key", key_headers(unknown), 401),
        ("not a key at all", key_headers("hello"), 401),
        ("revoked key", key_headers(revoked_secret), 403),
        ("revoked key in x-api-key", {"x-api-key": revoked_secret}, 403),
        ("admin token", admin_headers(w.settings), 400),  # see the module's docstring
    ]
    for label, headers, status in cases:
        malformed = label.startswith(("bad checksum", "zero", "not a key", "no key", "empty"))
        before = w.pool.uses

        def check(response: httpx.Response, what: str, s: int = status, lab: str = label) -> None:
            body = assert_problem(response, s, f"{lab}: {what}")
            assert b_secret not in response.text and revoked_secret not in response.text
            assert body["type"].startswith("/problems/"), body  # resolves on the API (problems.py)

        await _each_route(w, "customer", headers, check)
        if malformed:
            assert w.pool.uses == before, f"{label}: the database was asked about a malformed key"

    # A customer key (live, revoked or malformed-but-well-shaped) on every admin route: 403.
    for label, secret in (("B's key", b_secret), ("A's key", w.a.secret)):

        def forbidden(response: httpx.Response, what: str, lab: str = label) -> None:
            body = assert_problem(response, 403, f"{lab}: {what}")
            assert body["type"].endswith("/forbidden"), body

        await _each_route(w, "admin", key_headers(secret), forbidden)
        await _each_route(w, "admin", {"x-api-key": secret}, forbidden)

    # Nothing at all, or garbage, on admin routes: 401.
    def unauthenticated(response: httpx.Response, what: str) -> None:
        assert_problem(response, 401, what)

    for headers in ({}, key_headers("not-the-token"), key_headers(flipped[:-3])):
        await _each_route(w, "admin", headers, unauthenticated)
    # The key that was used all along still works: the refusals above changed nothing.
    assert (await w.http.get("/v1/credits/balance", headers=w.b.headers)).status_code == 200
