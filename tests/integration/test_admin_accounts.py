"""The admin account list and detail against the real writer: paging walks every account once
(registered ones and ones known only from their events), and each account's figures are the
ones `GET /v1/credits/balance` answers for it; scopes and bad input are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import Customer, admin_headers, api_client, key_headers, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
PROBLEM = "/problems/"
FIGURES = ("balance", "available", "overage", "reserved", "scheduled", "ledgerSeq")
REGISTERED = [f"acct_{n:02d}" for n in range(11)]
FROM_EVENTS = ["evt_a", "evt_b"]  # never registered: accounts from their first event


@dataclass
class Stack:
    driver: Driver
    http: httpx.AsyncClient
    settings: Settings

    @property
    def admin(self) -> dict[str, str]:
        return admin_headers(self.settings)


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    settings = namespace.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        async with api_client(settings, pipeline.pool, pipeline.producer) as http:
            yield Stack(driver, http, settings)


async def load(stack: Stack) -> dict[str, Customer]:
    """11 registered accounts (some empty, one owing, one holding), 2 known from events only."""
    customers = {
        account: await new_customer(stack.http, stack.settings, account, f"Name {account}")
        for account in REGISTERED
    }
    await stack.driver.commands(
        grant("acct_01", 100, "g1", bucket="subscription", expires_at="2099-01-01T00:00:00Z"),
        grant("acct_02", 10, "g2"),
        grant("acct_03", 40, "g3", effective_at="2099-01-01T00:00:00Z"),  # scheduled
        grant("evt_a", 5, "ga"),
        grant("evt_b", 8, "gb"),
    )
    await stack.driver.settled()
    await stack.driver.usage(
        usage("acct_01", "u1", credits=30, occurred_at=at(3)),
        usage("acct_02", "u2", credits=25, occurred_at=at(3)),  # owes 15
        usage("evt_b", "u3", credits=2, occurred_at=at(3)),
    )
    await stack.driver.settled()
    await stack.driver.commands(
        command("hold", "acct_01", "h1", hold_id="h1", amount=20,
                expires_at="2099-01-01T00:00:00Z", occurred_at=at(5)),
    )  # fmt: skip
    await stack.driver.settled()
    return customers


async def walk(stack: Stack, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every page of the list, following `nextPage`."""
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(100):
        page = await stack.http.get("/v1/admin/accounts", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["limit"] == limit and len(body["data"]) <= limit
        seen += body["data"]
        if not body["hasMore"]:
            assert body["nextPage"] is None
            return seen
        assert len(body["data"]) == limit and body["nextPage"]
        params = {"limit": limit, "next_page": body["nextPage"]}
    raise AssertionError("the list never ended")


async def test_paging_covers_every_account_once(stack: Stack) -> None:
    await load(stack)
    everyone = sorted(REGISTERED + FROM_EVENTS)
    for limit in (1, 3, 13, 500):
        listed = await walk(stack, stack.admin, limit)
        assert [a["accountId"] for a in listed] == everyone, limit
    default = (await stack.http.get("/v1/admin/accounts", headers=stack.admin)).json()
    assert default["limit"] == 100 and len(default["data"]) == len(everyone)
    by_id = {a["accountId"]: a for a in default["data"]}
    assert by_id["evt_a"]["name"] is None and by_id["evt_a"]["registered"] is False
    assert by_id["evt_a"]["createdAt"] is None and by_id["evt_a"]["balance"] == 5
    assert by_id["acct_00"] == {**by_id["acct_00"], "name": "Name acct_00", "registered": True,
                                "balance": 0, "lastActivityAt": None, "ledgerSeq": 0}  # fmt: skip
    assert by_id["acct_00"]["createdAt"]


async def test_detail_figures_equal_the_balance_endpoint(stack: Stack) -> None:
    customers = await load(stack)
    token = await stack.http.post(
        "/v1/admin/tokens", json={"name": "svc", "scopes": ["credits:read"]}, headers=stack.admin
    )
    service = key_headers(token.json()["secret"])
    listed = {a["accountId"]: a for a in await walk(stack, stack.admin, 4)}
    for account in REGISTERED + FROM_EVENTS:
        if account in customers:
            own = customers[account].headers
        else:
            own = {**service, "Creditledger-Account": account}
        balance = await stack.http.get("/v1/credits/balance", headers=own)
        assert balance.status_code == 200, balance.text
        detail = await stack.http.get(f"/v1/admin/accounts/{account}", headers=stack.admin)
        assert detail.status_code == 200, detail.text
        shown, expected = detail.json(), balance.json()
        assert {f: shown[f] for f in FIGURES} == {f: expected[f] for f in FIGURES}, account
        assert shown["lastActivityAt"] == expected["lastUpdated"], account
        assert listed[account] == shown, account
    figures = {a: listed[a] for a in ("acct_01", "acct_02", "acct_03")}
    assert (figures["acct_01"]["balance"], figures["acct_01"]["available"]) == (70, 50)
    assert (figures["acct_02"]["balance"], figures["acct_02"]["overage"]) == (-15, 15)
    assert (figures["acct_03"]["balance"], figures["acct_03"]["scheduled"]) == (0, 40)
    assert figures["acct_01"]["lastActivityAt"] is not None


def _problem(answer: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM + slug, body
    return body


async def test_scopes_unknown_accounts_and_bad_pages(stack: Stack) -> None:
    customers = await load(stack)

    async def minted(*scopes: str) -> dict[str, str]:
        answer = await stack.http.post(
            "/v1/admin/tokens", json={"name": "t", "scopes": list(scopes)}, headers=stack.admin
        )
        assert answer.status_code == 201, answer.text
        return key_headers(answer.json()["secret"])

    reader, service = await minted("accounts:read"), await minted("credits:read")
    assert (await stack.http.get("/v1/admin/accounts", headers=reader)).status_code == 200
    assert (await stack.http.get("/v1/admin/accounts/evt_b", headers=reader)).status_code == 200
    for url in ("/v1/admin/accounts", "/v1/admin/accounts/acct_01"):
        lacking = _problem(await stack.http.get(url, headers=service), 403, "insufficient-scope")
        assert lacking["scope"] == "accounts:read"
        customer = customers["acct_01"].headers
        _problem(await stack.http.get(url, headers=customer), 403, "forbidden")
        _problem(await stack.http.get(url), 401, "unauthenticated")
    _problem(await stack.http.get("/v1/admin/accounts/nobody", headers=reader), 404, "not-found")
    bad_id = await stack.http.get("/v1/admin/accounts/a%20b", headers=reader)
    assert bad_id.status_code == 422
    for limit in (0, 501, "x"):
        answer = await stack.http.get("/v1/admin/accounts", params={"limit": limit}, headers=reader)
        assert answer.status_code == 422, (limit, answer.text)
    first = await stack.http.get("/v1/admin/accounts", params={"limit": 2}, headers=reader)
    foreign = await stack.http.get(  # a ledger cursor is not this list's
        "/v1/credits/ledger", params={"limit": 1}, headers=customers["acct_01"].headers
    )
    for token in ("garbage", foreign.json()["nextCursor"], first.json()["nextPage"][:-2]):
        answer = await stack.http.get(
            "/v1/admin/accounts", params={"next_page": token}, headers=reader
        )
        _problem(answer, 400, "invalid-cursor")
