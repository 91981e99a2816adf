"""The HTTP edges refuse at once (422 naming the field, or 404) what the writer would surely
dead-letter or reject, on real Kafka and Postgres: instants past what UTC holds, events beyond
the future skew, one request id twice with different payloads in a batch, grants over before
they start, voids of grants the account never had."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import admin_headers, api_client
from tests.messages import usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
ACCOUNT = "acct_edges"
EXTREMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"]


@dataclass
class Edges:
    http: httpx.AsyncClient
    admin: dict[str, str]
    driver: Driver

    async def events(self, body: Any) -> httpx.Response:
        return await self.http.post("/v1/events", json=body, headers=self.admin)

    async def command(self, path: str, body: Any = None) -> httpx.Response:
        return await self.http.post(
            f"/v1/admin/accounts/{ACCOUNT}/{path}", json=body, headers=self.admin
        )


@pytest.fixture
async def edges(namespace: Settings) -> AsyncIterator[Edges]:
    async with (
        running(namespace, ("writer", "projector")) as handle,
        api_client(namespace, handle.pool, handle.producer) as http,
    ):
        admin = admin_headers(namespace)
        created = await http.post(
            "/v1/admin/accounts", json={"account_id": ACCOUNT, "name": "E"}, headers=admin
        )
        assert created.status_code == 201, created.text
        yield Edges(http, admin, Driver(namespace, handle.pool, handle.producer, handle.tasks))


def fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


def ahead(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_ingest_refuses_instants_beyond_utc_naming_the_field(edges: Edges) -> None:
    for text in EXTREMES:
        one = await edges.events(usage(ACCOUNT, "r1", credits=1, occurred_at=text))
        assert fields(one) == ["occurred_at"]
        assert "the instant must lie between" in one.json()["detail"]
        batch = {"events": [usage(ACCOUNT, "r1", credits=1),
                            usage(ACCOUNT, "r2", credits=1, occurred_at=text)]}  # fmt: skip
        assert fields(await edges.events(batch)) == ["events[1].occurred_at"]


async def test_ingest_refuses_events_beyond_the_future_skew(edges: Edges) -> None:
    skew = edges.driver.settings.max_future_skew_s
    now, beyond = ahead(0), ahead(skew + 120)
    batch = {"events": [usage(ACCOUNT, "s1", credits=1, occurred_at=now),
                        usage(ACCOUNT, "s2", credits=1, occurred_at=beyond)]}  # fmt: skip
    refused = await edges.events(batch)
    assert fields(refused) == ["events[1].occurred_at"]
    assert "occurred-in-future" in refused.json()["errors"][0]["message"]
    within = await edges.events(usage(ACCOUNT, "s3", credits=1, occurred_at=ahead(skew / 2)))
    assert within.status_code == 202, within.text
    # Nothing of the refused batch was published: only s3 reaches the ledger.
    edges.driver.published = 1
    await edges.driver.settled()
    assert [e["source"] for e in await edges.driver.entries(ACCOUNT)] == ["request:s3"]


async def test_ingest_refuses_one_request_id_twice_with_different_payloads(edges: Edges) -> None:
    first = usage(ACCOUNT, "dup", credits=2)
    other = usage(ACCOUNT, "dup", credits=3)
    refused = await edges.events({"events": [first, usage(ACCOUNT, "x", credits=1), other]})
    assert fields(refused) == ["events[2].request_id"]
    assert "events[0]" in refused.json()["errors"][0]["message"]
    # The same payload again (the same instant in another offset too) is a retry, not a reuse;
    # the same request id of another account is another request.
    shifted = {**first, "occurred_at": "2026-11-21T11:01:00+01:00"}
    elsewhere = usage("acct_other", "dup", credits=3)
    accepted = await edges.events({"events": [first, shifted, first, elsewhere]})
    assert (accepted.status_code, accepted.json()) == (202, {"accepted": 4})


async def test_admin_commands_refuse_instants_beyond_utc_and_the_skew(edges: Edges) -> None:
    for text in EXTREMES:
        assert fields(await edges.command("grants", {"amount": 5, "occurred_at": text})) == [
            "body.occurred_at"
        ]
        assert fields(await edges.command("grants", {"amount": 5, "expires_at": text})) == [
            "body.expires_at"
        ]
        hold = {"hold_id": "h1", "amount": 1, "expires_at": text}
        assert fields(await edges.command("holds", hold)) == ["body.expires_at"]
    skew = edges.driver.settings.max_future_skew_s
    future = {"amount": -1, "occurred_at": ahead(skew + 120)}
    refused = await edges.command("adjustments", future)
    assert fields(refused) == ["body.occurred_at"]
    assert "occurred-in-future" in refused.json()["errors"][0]["message"]


async def test_a_grant_over_before_it_starts_or_already_past_is_refused(edges: Edges) -> None:
    backwards = {"amount": 5, "effective_at": ahead(7200), "expires_at": ahead(3600)}
    assert fields(await edges.command("grants", backwards)) == ["body.expires_at"]
    before_itself = {"amount": 5, "occurred_at": ahead(0), "expires_at": ahead(-60)}
    assert fields(await edges.command("grants", before_itself)) == ["body.expires_at"]
    backdated_past = {"amount": 5, "occurred_at": "2026-01-01T00:00:00Z",
                      "expires_at": ahead(-3600)}  # fmt: skip
    refused = await edges.command("grants", backdated_past)
    assert fields(refused) == ["body.expires_at"]
    assert "in the past" in refused.json()["errors"][0]["message"]
    fine = await edges.command("grants", {"amount": 5, "expires_at": ahead(3600)})
    assert fine.status_code == 202, fine.text
    assert await edges.driver.pool.fetchval("SELECT count(*) FROM api_commands") == 1


async def test_voiding_a_grant_the_account_does_not_have_is_404(edges: Edges) -> None:
    by_path = await edges.command("grants/never-granted/void")
    assert by_path.status_code == 404, by_path.text
    assert by_path.headers["content-type"] == "application/problem+json"
    by_body = await edges.command("void", {"grant_id": "never-granted"})
    assert by_body.status_code == 404
    granted = await edges.command("grants", {"amount": 5})
    grant_id = granted.json()["commandId"]
    # Right behind its grant, before the writer or the projection saw it: accepted.
    voided = await edges.command(f"grants/{grant_id}/void")
    assert voided.status_code == 202, voided.text
    edges.driver.published = 2
    await edges.driver.settled()
    assert [e["reason"] for e in await edges.driver.entries(ACCOUNT)] == ["grant", "void"]
    # Voided: closed for good, so voiding it again is refused too.
    assert (await edges.command(f"grants/{grant_id}/void")).status_code == 404
    # Another account's grant is not this one's.
    other = await edges.http.post(
        "/v1/admin/accounts", json={"account_id": "acct_edges_2", "name": "F"}, headers=edges.admin
    )
    assert other.status_code == 201
    theirs = await edges.http.post(
        f"/v1/admin/accounts/acct_edges_2/grants/{grant_id}/void", headers=edges.admin
    )
    assert theirs.status_code == 404
