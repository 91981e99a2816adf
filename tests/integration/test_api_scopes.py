"""Admin tokens with scopes against the real stack: minting, listing, revoking, and each admin
route refusing a token that lacks its scope (403 `insufficient-scope` naming the scope)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import admin_headers, api_client, key_headers, new_customer

pytestmark = pytest.mark.integration
PROBLEM = "/problems/"  # problem types resolve on the API itself (problems.py)


@pytest.fixture
async def http(namespace: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(namespace, ("writer",)) as handle,
        api_client(namespace, handle.pool, handle.producer) as client,
    ):
        yield client


async def mint(http: httpx.AsyncClient, admin: dict[str, str], *scopes: str) -> dict[str, str]:
    minted = await http.post(
        "/v1/admin/tokens", json={"name": "+".join(scopes), "scopes": list(scopes)}, headers=admin
    )
    assert minted.status_code == 201, minted.text
    body = minted.json()
    assert body["secret"].startswith("cl_adm_") and body["scopes"] == sorted(set(scopes))
    return {"tokenId": body["tokenId"], "secret": body["secret"]}


def assert_insufficient(answer: httpx.Response, scope: str) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == PROBLEM + "insufficient-scope"
    assert answer.json()["scope"] == scope and scope in answer.json()["detail"]


async def test_scoped_tokens_reach_only_their_routes(
    http: httpx.AsyncClient, namespace: Settings
) -> None:
    root = admin_headers(namespace)
    acme = await new_customer(http, namespace, "acme_scopes")
    writer = await mint(http, root, "commands:write")
    reader = await mint(http, root, "commands:read")
    w, r = key_headers(writer["secret"]), key_headers(reader["secret"])

    granted = await http.post(
        "/v1/admin/accounts/acme_scopes/grants",
        json={"amount": 10, "bucket": "purchased", "name": "pack"}, headers=w,
    )  # fmt: skip
    assert granted.status_code == 202, granted.text
    command_id = granted.json()["commandId"]
    assert_insufficient(
        await http.post("/v1/admin/accounts", json={"account_id": "x1", "name": "x"}, headers=w),
        "accounts:write",
    )
    assert_insufficient(
        await http.post("/v1/admin/accounts/acme_scopes/keys", headers=w), "keys:write"
    )
    assert_insufficient(await http.get(f"/v1/admin/commands/{command_id}", headers=w),
                        "commands:read")  # fmt: skip
    assert_insufficient(await http.get("/v1/admin/tokens", headers=w), "admin")

    status = await http.get(f"/v1/admin/commands/{command_id}", headers=r)
    assert status.status_code == 200, status.text
    assert status.json()["status"] in ("pending", "applied")
    assert_insufficient(
        await http.post("/v1/admin/accounts/acme_scopes/adjustments",
                        json={"amount": 1, "reason": "r"}, headers=r),
        "commands:write",
    )  # fmt: skip

    # Revoked: 403 from then on; revoking again is 404.
    revoked = await http.delete(f"/v1/admin/tokens/{writer['tokenId']}", headers=root)
    assert revoked.status_code == 204, revoked.text
    again = await http.post(
        "/v1/admin/accounts/acme_scopes/grants",
        json={"amount": 10, "bucket": "purchased", "name": "pack"}, headers=w,
    )  # fmt: skip
    assert again.status_code == 403 and again.json()["type"] == PROBLEM + "token-revoked"
    gone = await http.delete(f"/v1/admin/tokens/{writer['tokenId']}", headers=root)
    assert gone.status_code == 404

    # Unknown admin token: 401; a customer key on admin routes: 403 forbidden.
    unknown = await http.get("/v1/admin/tokens", headers=key_headers("cl_adm_nosuchtoken"))
    assert unknown.status_code == 401
    customer = await http.get("/v1/admin/tokens", headers=acme.headers)
    assert customer.status_code == 403 and customer.json()["type"] == PROBLEM + "forbidden"


async def test_admin_scope_mints_and_lists_without_secrets(
    http: httpx.AsyncClient, namespace: Settings
) -> None:
    root = admin_headers(namespace)
    boss = await mint(http, root, "admin")
    b = key_headers(boss["secret"])
    minted = await mint(http, b, "accounts:write", "keys:write", "keys:write")
    created = await http.post(
        "/v1/admin/accounts", json={"account_id": "scoped_1", "name": "S"},
        headers=key_headers(minted["secret"]),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    key = await http.post("/v1/admin/accounts/scoped_1/keys", headers=key_headers(minted["secret"]))
    assert key.status_code == 201, key.text

    listed = await http.get("/v1/admin/tokens", headers=b)
    assert listed.status_code == 200, listed.text
    tokens = {t["tokenId"]: t for t in listed.json()["tokens"]}
    assert {boss["tokenId"], minted["tokenId"]} <= set(tokens)
    assert tokens[minted["tokenId"]]["scopes"] == ["accounts:write", "keys:write"]
    assert tokens[minted["tokenId"]]["active"] is True
    assert all("secret" not in t for t in tokens.values())
    assert boss["secret"] not in listed.text and minted["secret"] not in listed.text
    stored = await http.get("/v1/admin/tokens", headers=root)  # the env token too
    assert stored.status_code == 200

    for bad in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"scopes": ["admin"]},
    ):
        refused = await http.post("/v1/admin/tokens", json=bad, headers=b)
        assert refused.status_code == 422, (bad, refused.text)
