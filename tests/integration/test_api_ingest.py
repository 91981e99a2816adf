"""`POST /v1/events` on real Kafka and Postgres: all or nothing, answered after the acks."""

from __future__ import annotations

import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import admin_headers, api_client, key_headers, new_customer
from tests.messages import grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
INGEST_TOKEN = "ingest-token-for-tests"


async def test_http_ingest_publishes_all_or_nothing(namespace: Settings) -> None:
    settings = namespace.model_copy(update={"ingest_token": INGEST_TOKEN})
    async with (
        running(settings, ("writer", "projector")) as handle,
        api_client(settings, handle.pool, handle.producer) as http,
    ):
        driver = Driver(settings, handle.pool, handle.producer, handle.tasks)
        await driver.commands(grant("ing", 100, "g"))
        await driver.settled()
        ingest = key_headers(INGEST_TOKEN)

        one = await http.post("/v1/events", json=usage("ing", "r1", credits=3), headers=ingest)
        assert (one.status_code, one.json()) == (202, {"accepted": 1})
        batch = {"events": [usage("ing", f"b{n}", credits=2) for n in range(3)]}
        many = await http.post("/v1/events", json=batch, headers=admin_headers(settings))
        assert (many.status_code, many.json()) == (202, {"accepted": 3})

        bad = {"events": [usage("ing", "x0", credits=1), usage("ing", "x1", credits=-5)]}
        refused = await http.post("/v1/events", json=bad, headers=ingest)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "events[1].credits"
        too_many = {"events": [usage("ing", f"m{n}", credits=1) for n in range(1001)]}
        assert (await http.post("/v1/events", json=too_many, headers=ingest)).status_code == 422
        malformed = await http.post("/v1/events", content=b"{nope", headers=ingest)
        assert malformed.status_code == 400

        minted = await http.post(
            "/v1/admin/tokens",
            json={"name": "ingest only", "scopes": ["events:write"]},
            headers=admin_headers(settings),
        )
        assert minted.status_code == 201, minted.text
        ingest_only = key_headers(minted.json()["secret"])
        scoped = await http.post(
            "/v1/events", json=usage("ing", "s1", credits=1), headers=ingest_only
        )
        assert (scoped.status_code, scoped.json()) == (202, {"accepted": 1})
        cannot_grant = await http.post(
            "/v1/admin/accounts/ing/grants", json={"amount": 5}, headers=ingest_only
        )
        assert cannot_grant.status_code == 403
        customer = await new_customer(http, settings, "ing_customer")
        assert (
            await http.post("/v1/events", json=bad, headers=customer.headers)
        ).status_code == 403
        assert (await http.post("/v1/events", json=bad)).status_code == 401

        driver.published += 1 + 3 + 1  # what the API published: refused batches published none
        await driver.settled()
        balance = await handle.pool.fetchval(
            "SELECT balance FROM balance_view WHERE account_id='ing'"
        )
        assert balance == 100 - 3 - 3 * 2 - 1
        assert await handle.pool.fetchval("SELECT count(*) FROM processed_requests") == 5
