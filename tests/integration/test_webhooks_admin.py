"""The webhook admin API on a real Postgres: URLs refused (scheme, private addresses unless
allowed), the secret shown once, list and delete, deliveries paged, scopes enforced."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from services.platform.postgres import create_pool
from services.platform.settings import Settings
from tests.api_client import admin_headers, api_client

pytestmark = pytest.mark.integration
PROBLEM = "/problems/"
PUBLIC_URL = "https://93.184.215.14/hooks"  # an address literal: no lookup needed


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert namespace.database_url is not None
    created = await create_pool(namespace.database_url, 4)
    yield created
    await created.close()


@pytest.fixture
async def http(namespace: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    unused_producer = None  # these routes publish nothing
    async with api_client(namespace, pool, unused_producer) as client:
        yield client


def assert_invalid_url(answer: httpx.Response, why: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == PROBLEM + "invalid-request"
    [error] = problem["errors"]
    assert error["field"] == "body.url" and why in error["message"], error


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9000/hooks", "private, loopback or link-local"),
        ("http://10.1.2.3/hooks", "private, loopback or link-local"),
        ("http://192.168.0.10/hooks", "private, loopback or link-local"),
        ("http://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
        ("http://[::1]:8080/hooks", "private, loopback or link-local"),
        ("http://[::ffff:127.0.0.1]/hooks", "private, loopback or link-local"),
        ("http://100.64.0.1/hooks", "private, loopback or link-local"),
        ("http://0.0.0.0/hooks", "private, loopback or link-local"),
        ("http://[64:ff9b::7f00:1]/hooks", "private, loopback or link-local"),  # NAT64
        ("http://[64:ff9b:1::a00:1]/hooks", "private, loopback or link-local"),
        ("http://[2002:a9fe:a9fe::]/hooks", "private, loopback or link-local"),  # 6to4
        ("http://[::127.0.0.1]/hooks", "private, loopback or link-local"),
        ("http://[::ffff:0:7f00:1]/hooks", "private, loopback or link-local"),
        ("http://[fec0::1]/hooks", "private, loopback or link-local"),
        ("https://\u00adfoo.com/hooks", "host is not valid"),  # no client can parse it
        ("https://" + "a" * 64 + ".example.com/hooks", "host is not valid"),  # was a 500
        ("http://localhost:8080/hooks", "loopback name"),
        ("ftp://93.184.215.14/hooks", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("https://user:pw@93.184.215.14/hooks", "credentials"),
        ("https:///hooks", "no host"),
    ],
)
async def test_refused_urls(
    http: httpx.AsyncClient, namespace: Settings, url: str, why: str
) -> None:
    answer = await http.post(
        "/v1/admin/webhooks", json={"url": url}, headers=admin_headers(namespace)
    )
    assert_invalid_url(answer, why)


async def test_private_urls_are_allowed_with_the_setting(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    allowed = namespace.model_copy(update={"webhooks_allow_private": True})
    async with api_client(allowed, pool, None) as http:
        answer = await http.post(
            "/v1/admin/webhooks",
            json={"url": "http://127.0.0.1:9000/hooks"},
            headers=admin_headers(allowed),
        )
        assert answer.status_code == 201, answer.text
        refused = await http.post(
            "/v1/admin/webhooks", json={"url": "ftp://127.0.0.1/"}, headers=admin_headers(allowed)
        )
        assert_invalid_url(refused, "only http and https")


async def test_register_list_delete_and_deliveries(
    http: httpx.AsyncClient, namespace: Settings
) -> None:
    admin = admin_headers(namespace)
    created = await http.post(
        "/v1/admin/webhooks",
        json={"url": PUBLIC_URL, "events": ["low_balance", "grant_expiring"], "description": "ops"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["id"].startswith("we_") and hook["secret"].startswith("whsec_")
    assert hook["events"] == ["grant_expiring", "low_balance"] and hook["description"] == "ops"
    assert hook["createdAt"]
    listed = (await http.get("/v1/admin/webhooks", headers=admin)).json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0], "the secret is shown once"
    page = await http.get(f"/v1/admin/webhooks/{hook['id']}/deliveries", headers=admin)
    assert page.status_code == 200 and page.json() == {
        "data": [],
        "hasMore": False,
        "nextCursor": None,
    }
    bad_type = await http.post(
        "/v1/admin/webhooks", json={"url": PUBLIC_URL, "events": ["nope"]}, headers=admin
    )
    assert bad_type.status_code == 422 and bad_type.json()["errors"][0]["field"] == "body.events.0"
    extra = await http.post(
        "/v1/admin/webhooks", json={"url": PUBLIC_URL, "secret": "mine"}, headers=admin
    )
    assert extra.status_code == 422
    deleted = await http.delete(f"/v1/admin/webhooks/{hook['id']}", headers=admin)
    assert deleted.status_code == 204
    again = await http.delete(f"/v1/admin/webhooks/{hook['id']}", headers=admin)
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"
    assert (await http.get("/v1/admin/webhooks", headers=admin)).json()["data"] == []
    unknown = await http.get("/v1/admin/webhooks/we_0123/deliveries", headers=admin)
    assert unknown.status_code == 404
    bad_cursor = await http.get(
        f"/v1/admin/webhooks/{hook['id']}/deliveries?cursor=zz", headers=admin
    )
    assert bad_cursor.status_code == 400


async def test_deliveries_page_newest_first(
    http: httpx.AsyncClient, namespace: Settings, pool: asyncpg.Pool
) -> None:
    admin = admin_headers(namespace)
    hook = (await http.post("/v1/admin/webhooks", json={"url": PUBLIC_URL}, headers=admin)).json()
    await pool.execute(
        """INSERT INTO webhook_deliveries (account_id, event_id, endpoint_id, event_type, body,
               next_try_at, created_at)
           SELECT 'acct_p', 'acct_p:' || n || ':low_balance', $1, 'low_balance', '{}'::bytea,
                  now(), now() - make_interval(secs => 100 - n)
           FROM generate_series(1, 5) AS n""",
        hook["id"],
    )
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await http.get(
            f"/v1/admin/webhooks/{hook['id']}/deliveries", params=params, headers=admin
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [d["eventId"] for d in body["data"]]
        if not body["hasMore"]:
            break
        cursor = body["nextCursor"]
    assert seen == [f"acct_p:{n}:low_balance" for n in (5, 4, 3, 2, 1)]


async def test_scopes(http: httpx.AsyncClient, namespace: Settings) -> None:
    admin = admin_headers(namespace)

    async def mint(scope: str) -> dict[str, str]:
        minted = await http.post(
            "/v1/admin/tokens", json={"name": scope, "scopes": [scope]}, headers=admin
        )
        assert minted.status_code == 201, minted.text
        return {"Authorization": f"Bearer {minted.json()['secret']}"}

    reader, writer = await mint("webhooks:read"), await mint("webhooks:write")
    refused = await http.post("/v1/admin/webhooks", json={"url": PUBLIC_URL}, headers=reader)
    assert refused.status_code == 403 and refused.json()["scope"] == "webhooks:write"
    made = await http.post("/v1/admin/webhooks", json={"url": PUBLIC_URL}, headers=writer)
    assert made.status_code == 201
    assert (await http.get("/v1/admin/webhooks", headers=reader)).status_code == 200
    assert (await http.get("/v1/admin/webhooks", headers=writer)).status_code == 403
    assert (await http.get("/v1/admin/webhooks")).status_code == 401
