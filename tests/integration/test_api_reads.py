"""Customer reads over HTTP against the real writer and projector (Kafka and Postgres)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import Customer, api_client, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
SCAN = "POST /v1/scanner/scan"
PING = "GET /v1/ping"
SUB_EXPIRES = "2027-06-01T00:00:00Z"
PROBLEM = "application/problem+json"


@dataclass
class Stack:
    driver: Driver
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    # The API gets a roomy rate limit: these tests read much faster than any client would.
    api_settings = namespace.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        async with api_client(api_settings, pipeline.pool, pipeline.producer) as http:
            yield Stack(driver, http, api_settings)


@dataclass
class Accounts:
    acme: Customer
    rival: Customer


async def load(stack: Stack) -> Accounts:
    """acme: 13 entries, balance 100; rival: 2 entries, balance 15."""
    acme = await new_customer(stack.http, stack.settings, "acme", "Acme Corp")
    rival = await new_customer(stack.http, stack.settings, "rival")
    driver = stack.driver
    await driver.commands(
        grant("acme", 100, "sub", bucket="subscription", name="Plan", source="inv_1",
              metadata={"plan": "pro"}, expires_at=SUB_EXPIRES),  # seq 1
        grant("acme", 50, "gift", bucket="gift", source="pack_1"),  # seq 2
        grant("acme", 30, "promo", bucket="promotional"),  # seq 3
        command("void_grant", "acme", "v1", grant_id="promo"),  # seq 4
        grant("rival", 20, "rival-grant"),
    )  # fmt: skip
    await driver.settled()
    calls = [usage("acme", f"r{n}", credits=10, occurred_at=at(n)) for n in range(1, 6)]
    calls[0]["latency_ms"], calls[2]["latency_ms"] = 100, 300
    calls.append(usage("acme", "r6", credits=10, occurred_at=at(24 * 60)))  # the next day
    calls.append(usage("acme", "fail", 500, credits=7))  # consumed and refunded
    calls.append(usage("acme", "free", credits=0, endpoint=PING, latency_ms=5))  # no entry
    await driver.usage(*calls, usage("rival", "b1", credits=5))  # acme seq 5..12
    await driver.settled()
    await driver.commands(command("refund", "acme", "rf1", request_id="r2", reason="bad scan"))
    await driver.settled()  # seq 13
    return Accounts(acme, rival)


async def get(
    stack: Stack, who: Customer, path: str, status: int = 200, /, **params: Any
) -> httpx.Response:
    response = await stack.http.get(path, params=params, headers=who.headers)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == PROBLEM
        assert "Traceback" not in response.text
    return response


async def test_balance_check_and_freshness_headers(stack: Stack) -> None:
    acme = (await load(stack)).acme
    balance = await get(stack, acme, "/v1/credits/balance")
    body = balance.json()
    assert (body["balance"], body["available"], body["reserved"]) == (100, 100, 0)
    assert (body["grantedTotal"], body["consumedTotal"], body["ledgerSeq"]) == (180, 50, 13)
    assert body["buckets"] == [
        {"kind": "gift", "amount": 50, "balance": 50},
        {"kind": "subscription", "amount": 100, "balance": 50},
    ]  # the voided promotional grant left with what it had: no bucket of it is left
    assert (body["scheduled"], body["overage"]) == (0, 0)
    assert body["resetAt"] == SUB_EXPIRES
    assert balance.headers["X-Ledger-Seq"] == "13"
    assert balance.headers["X-Credits-Remaining"] == "100"
    assert "X-Ledger-Stale" not in balance.headers

    ok = await get(stack, acme, "/v1/credits/check", cost=100)
    assert ok.json() == {
        "allowed": True, "available": 100, "cost": 100, "endpoint": None, "owed": 0,
        "ledgerSeq": 13,
    }  # fmt: skip
    assert ok.headers["X-Credits-Remaining"] == "100"
    assert ok.headers["X-Ledger-Seq"] == "13"
    short = await get(stack, acme, "/v1/credits/check", 402, cost=101)
    problem = short.json()
    assert problem["type"].endswith("/insufficient-credits")
    assert (problem["status"], problem["available"], problem["allowed"]) == (402, 100, False)
    assert short.headers["X-Credits-Remaining"] == "100"
    for bad in ({"cost": -1}, {"cost": "abc"}, {"cost": 1.5}, {}):
        await get(stack, acme, "/v1/credits/check", 422, **bad)
    await get(stack, acme, "/v1/credits/balance", 422, min_seq=-1)


async def test_min_seq_waits_for_the_projection_then_answers_stale(stack: Stack) -> None:
    acme = (await load(stack)).acme
    waiting = asyncio.create_task(get(stack, acme, "/v1/credits/balance", min_seq=14))
    await asyncio.sleep(0.3)
    assert not waiting.done(), "a read asking for seq 14 answered before it existed"
    await stack.driver.usage(usage("acme", "r7", credits=4, occurred_at=at(30)))
    fresh = await waiting
    assert fresh.headers["X-Ledger-Seq"] == "14"
    assert "X-Ledger-Stale" not in fresh.headers
    assert (fresh.json()["ledgerSeq"], fresh.json()["balance"]) == (14, 96)
    await stack.driver.settled()
    # Already there: no wait. Never reached: answered after the bounded wait, marked stale.
    for path in ("/v1/credits/activity", "/v1/usage", "/v1/credits/grants", "/v1/credits/ledger"):
        there = await get(stack, acme, path, min_seq=14)
        assert there.headers["X-Ledger-Seq"] == "14", path
        assert there.json()["ledgerSeq"] == 14, path
    impatient = stack.settings.model_copy(update={"api_read_wait_max_ms": 500})
    async with api_client(impatient, stack.driver.pool, stack.driver.producer) as http:
        started = time.monotonic()
        stale = await http.get("/v1/account/summary", params={"min_seq": 1_000},
                               headers=acme.headers)  # fmt: skip
        waited = time.monotonic() - started
    assert stale.status_code == 200
    assert 0.5 <= waited < 5
    assert stale.headers["X-Ledger-Stale"] == "true"
    assert stale.headers["X-Ledger-Seq"] == "14"


async def test_activity_days_net_of_refunds(stack: Stack) -> None:
    acme = (await load(stack)).acme
    path = "/v1/credits/activity"
    days = await get(stack, acme, path, **{"from": "2026-11-21", "to": "2026-11-22"})
    assert days.json()["days"] == [
        # r1..r5 (r2 refunded in full); the 500 nets to zero scans and credits.
        {"day": "2026-11-21", "scans": 4, "credits": 40, "refunds": 17},
        {"day": "2026-11-22", "scans": 1, "credits": 10, "refunds": 0},
    ]
    assert days.headers["X-Ledger-Seq"] == "13"
    only_first = await get(
        stack, acme, path, **{"from": "2026-11-21T00:00:00+02:00", "to": "2026-11-22T00:00:00Z"}
    )
    assert [d["day"] for d in only_first.json()["days"]] == ["2026-11-21"]  # 20th: nothing
    default = await get(stack, acme, path)  # the last 366 days up to now
    assert len(default.json()["days"]) == 2
    await get(stack, acme, path, 422, **{"from": "2025-01-01", "to": "2026-11-22"})
    await get(stack, acme, path, 422, **{"from": "2026-11-21T10:00:00"})  # naive
    await get(stack, acme, path, 422, **{"from": "2026-11-22", "to": "2026-11-21"})
    await get(stack, acme, path, 422, **{"from": "yesterday"})


async def test_ledger_rows_filters_and_expand(stack: Stack) -> None:
    accounts = await load(stack)
    acme, rival = accounts.acme, accounts.rival
    page = (await get(stack, acme, "/v1/credits/ledger")).json()
    assert [e["seq"] for e in page["data"]] == list(range(13, 0, -1))
    envelope = (page["page"], page["limit"], page["hasMore"], page["nextCursor"])
    assert envelope == (1, 100, False, None)
    newest = page["data"][0]
    assert {k: v for k, v in newest.items() if k not in ("id", "recorded_at")} == {
        "account_id": "acme", "seq": 13, "delta": 10, "balance_after": 100,
        "reason": "refund", "source": "refund:r2",
        "bucket": {"grant_id": "sub", "kind": "subscription"},
        "metadata": {"reason": "bad scan", "command_id": "rf1", "endpoint": SCAN,
                     "consumed_at": "2026-11-21T10:02:00+00:00", "refundable_after": 0},
        "reserved_delta": 0, "occurred_at": "2026-11-21T10:02:00Z",
    }  # fmt: skip
    first_grant = page["data"][-1]
    assert (first_grant["reason"], first_grant["source"], first_grant["delta"]) == (
        "grant", "inv_1", 100,
    )  # fmt: skip
    assert first_grant["metadata"] == {"name": "Plan", "plan": "pro", "granted": 100}

    refunds = (await get(stack, acme, "/v1/credits/ledger", reason="refund")).json()["data"]
    assert [(e["seq"], e["source"]) for e in refunds] == [(13, "refund:r2"), (12, "refund:fail")]
    mixed = (await get(stack, acme, "/v1/credits/ledger", reason="grant,void")).json()["data"]
    assert [e["seq"] for e in mixed] == [4, 3, 2, 1]
    await get(stack, acme, "/v1/credits/ledger", 422, reason="debit")
    later = (await get(stack, acme, "/v1/credits/ledger", **{"from": "2026-11-22"})).json()
    assert [e["source"] for e in later["data"]] == ["request:r6"]
    early = await get(stack, acme, "/v1/credits/ledger", to="2026-11-21T10:00:30Z")
    assert [e["seq"] for e in early.json()["data"]] == [3, 2, 1]
    await get(stack, acme, "/v1/credits/ledger", 422, to="2026-11-21T10:00:30")

    expanded = (await get(stack, acme, "/v1/credits/ledger", expand="request")).json()["data"]
    by_seq = {e["seq"]: e for e in expanded}
    request = by_seq[5]["request"]
    assert {k: v for k, v in request.items() if k != "recorded_at"} == {
        "request_id": "r1", "endpoint": SCAN, "key_id": "key_1", "status_code": 200,
        "occurred_at": "2026-11-21T10:01:00Z", "first_seq": 5,
    }  # fmt: skip
    assert request["recorded_at"] is not None
    assert by_seq[11]["request"]["status_code"] == 500
    assert all("request" not in by_seq[s] for s in (1, 2, 3, 4, 12, 13))
    await get(stack, acme, "/v1/credits/ledger", 422, expand="scan,teleport")

    # Another account's key sees its own two entries, and not one of acme's.
    theirs = (await get(stack, rival, "/v1/credits/ledger")).json()["data"]
    assert [(e["account_id"], e["seq"]) for e in theirs] == [("rival", 2), ("rival", 1)]
    await get(stack, rival, f"/v1/credits/ledger/{newest['id']}", 404)
    await get(stack, rival, "/v1/credits/ledger/not-a-uuid", 404)
    mine = (await get(stack, acme, f"/v1/credits/ledger/{newest['id']}")).json()
    assert mine == newest


async def test_ledger_pagination_page_offset_and_cursor_agree(stack: Stack) -> None:
    acme = (await load(stack)).acme
    path = "/v1/credits/ledger"

    async def seqs(**params: Any) -> tuple[list[int], dict[str, Any]]:
        body = (await get(stack, acme, path, **params)).json()
        return [e["seq"] for e in body["data"]], body

    first, body = await seqs(limit=5)
    assert (first, body["page"], body["hasMore"]) == ([13, 12, 11, 10, 9], 1, True)
    second, by_page = await seqs(limit=5, page=2)
    assert second == [8, 7, 6, 5, 4]
    assert (await seqs(limit=5, offset=5))[0] == second
    by_cursor, cursor_body = await seqs(limit=5, cursor=body["nextCursor"])
    assert by_cursor == second
    assert cursor_body["page"] == 2
    assert cursor_body["nextCursor"] == by_page["nextCursor"]
    third, last = await seqs(limit=5, cursor=cursor_body["nextCursor"])
    assert (third, last["hasMore"], last["nextCursor"]) == ([3, 2, 1], False, None)
    assert (await seqs(limit=5, page=3))[0] == third
    assert (await seqs(limit=5, page=4))[0] == []
    # A cursor stays put while new entries arrive; page numbers shift.
    await stack.driver.usage(usage("acme", "r9", credits=1))
    await stack.driver.settled()
    assert (await seqs(limit=5, cursor=body["nextCursor"]))[0] == second
    assert (await seqs(limit=5, page=2))[0] == [9, 8, 7, 6, 5]
    # A cursor belongs to its filters; bounds and combinations are checked.
    await get(stack, acme, path, 400, cursor=body["nextCursor"], reason="consume")
    await get(stack, acme, path, 400, cursor=body["nextCursor"], page=2)
    await get(stack, acme, path, 400, cursor="bm90LW91cnM")
    await get(stack, acme, path, 400, page=2, offset=5)
    for bad in ({"limit": 0}, {"limit": 501}, {"page": 0}, {"offset": -1}):
        await get(stack, acme, path, 422, **bad)
    filtered, body = await seqs(limit=2, reason="consume")
    assert filtered == [14, 11]
    assert (await seqs(limit=2, reason="consume", cursor=body["nextCursor"]))[0] == [10, 9]
    assert len((await seqs(limit=500))[0]) == 14


async def test_grants_filters_includes_and_pages(stack: Stack) -> None:
    accounts = await load(stack)
    acme, rival = accounts.acme, accounts.rival
    path = "/v1/credits/grants"
    listed = (await get(stack, acme, path)).json()
    assert [g["id"] for g in listed["data"]] == ["sub", "gift"]
    assert listed["nextPage"] is None
    sub = listed["data"][0]
    assert sub == {
        "id": "sub", "name": "Plan", "bucket": "subscription", "priority": 10,
        "amount": 100, "remaining": 50, "source": "inv_1", "state": "active",
        "archived": False,
        "schedule": {"effectiveAt": "2026-11-21T10:00:00Z", "expiresAt": SUB_EXPIRES},
        "appliesTo": None, "metadata": {"name": "Plan", "plan": "pro"},
        "grantedAt": "2026-11-21T10:00:00Z", "grantedSeq": 1, "closedSeq": None,
    }  # fmt: skip
    archived = (await get(stack, acme, path, include_archived="true")).json()["data"]
    assert [(g["id"], g["state"], g["archived"], g["remaining"]) for g in archived] == [
        ("sub", "active", False, 50), ("gift", "active", False, 50),
        ("promo", "voided", True, 0),
    ]  # fmt: skip
    assert archived[2]["closedSeq"] == 4
    with_balance = (await get(stack, acme, path, include_balance="true")).json()["data"]
    assert [g["balance"] for g in with_balance] == [50, 50]
    ledgers = (await get(stack, acme, path, include_ledgers="true")).json()["data"]
    assert [e["seq"] for e in ledgers[0]["ledger"]] == [13, 12, 11, 10, 9, 8, 7, 6, 5, 1]
    assert [e["seq"] for e in ledgers[1]["ledger"]] == [2]
    assert ledgers[0]["ledgerHasMore"] is False

    one = (await get(stack, acme, path, limit=1)).json()
    assert [g["id"] for g in one["data"]] == ["sub"]
    two = (await get(stack, acme, path, limit=1, next_page=one["nextPage"])).json()
    assert ([g["id"] for g in two["data"]], two["nextPage"]) == (["gift"], None)
    await get(stack, acme, path, 400, limit=1, next_page=one["nextPage"], include_archived="true")
    await get(stack, acme, path, 422, limit=0)
    await get(stack, acme, path, 422, limit=26)

    async def ids(**params: Any) -> list[str]:
        return [g["id"] for g in (await get(stack, acme, path, **params)).json()["data"]]

    assert await ids(covering_date="2027-07-01") == ["gift"]
    assert await ids(covering_date="2026-11-21T09:59:59Z") == []
    assert await ids(starting_at="2027-06-01T00:00:00Z") == ["gift"]
    assert await ids(starting_at="2027-05-31") == ["sub", "gift"]
    assert await ids(effective_before="2026-11-21") == []
    assert await ids(effective_before="2026-11-22", include_archived="true") == [
        "sub", "gift", "promo",
    ]  # fmt: skip
    await get(stack, acme, path, 422, covering_date="2026-11-21T10:00:00")

    # One grant by id: its owner sees it (even archived); another account's key gets 404.
    assert (await get(stack, acme, f"{path}/promo")).json()["state"] == "voided"
    for grant_id in ("sub", "gift", "promo", "nope"):
        await get(stack, rival, f"{path}/{grant_id}", 404)
    theirs = (await get(stack, rival, path)).json()["data"]
    assert [g["id"] for g in theirs] == ["rival-grant"]


async def test_usage_grouped_by_endpoint_day_and_month(stack: Stack) -> None:
    acme = (await load(stack)).acme
    span = {"from": "2026-11-21", "to": "2026-11-22"}
    by_endpoint = (await get(stack, acme, "/v1/usage", **span)).json()
    assert by_endpoint["groupBy"] == "endpoint"
    assert by_endpoint["rows"] == [
        {"key": PING, "requests": 1, "successfulRequests": 1, "failedRequests": 0,
         "credits": 0, "latencyMsAvg": 5.0, "latencyMsMax": 5},
        {"key": SCAN, "requests": 7, "successfulRequests": 6, "failedRequests": 1,
         "credits": 50, "latencyMsAvg": 200.0, "latencyMsMax": 300},
    ]  # fmt: skip
    by_day = (await get(stack, acme, "/v1/usage", group_by="day", **span)).json()["rows"]
    assert [(r["key"], r["requests"], r["failedRequests"], r["credits"]) for r in by_day] == [
        ("2026-11-21", 7, 1, 40), ("2026-11-22", 1, 0, 10),
    ]  # fmt: skip
    assert by_day[1]["latencyMsAvg"] is None
    by_month = (await get(stack, acme, "/v1/usage", group_by="month", **span)).json()["rows"]
    assert [(r["key"], r["requests"], r["successfulRequests"], r["credits"]) for r in by_month] == [
        ("2026-11", 8, 7, 50),
    ]  # fmt: skip
    await get(stack, acme, "/v1/usage", 422, group_by="week")
    await get(stack, acme, "/v1/usage", 422, **{"from": "2024-01-01"})


async def test_account_summary_for_the_current_period(stack: Stack) -> None:
    accounts = await load(stack)
    acme = accounts.acme
    now = datetime.now(UTC).replace(microsecond=0)
    await stack.driver.usage(
        usage("acme", "today1", credits=3, occurred_at=now.isoformat()),
        usage("acme", "today2", 404, credits=2, occurred_at=now.isoformat()),
        usage("acme", "today3", credits=0, endpoint=PING, occurred_at=now.isoformat()),
    )
    await stack.driver.settled()
    summary = (await get(stack, acme, "/v1/account/summary", period="daily")).json()
    assert (summary["accountId"], summary["name"]) == ("acme", "Acme Corp")
    assert summary["accountCreatedAt"] is not None
    credit = summary["creditBalance"]
    assert (credit["balance"], credit["available"], credit["ledgerSeq"]) == (97, 97, 16)
    assert summary["subscription"] == {"amount": 100, "balance": 47, "resetAt": SUB_EXPIRES}
    today = now.date().isoformat()
    assert summary["usage"] == {
        "period": "daily", "periodStart": f"{today}T00:00:00Z",
        "periodEnd": summary["usage"]["periodEnd"],
        "totalRequests": 3, "successfulRequests": 2, "failedRequests": 1, "creditsConsumed": 3,
        "requestsByEndpoint": {PING: 1, SCAN: 2},
    }  # fmt: skip
    assert summary["totalRequestsAllTime"] == 8 + 3
    assert summary["ledgerSeq"] == 16
    monthly = (await get(stack, acme, "/v1/account/summary")).json()["usage"]
    assert monthly["period"] == "monthly"
    assert monthly["periodStart"] == f"{now.date().replace(day=1).isoformat()}T00:00:00Z"
    assert monthly["totalRequests"] >= 3
    await get(stack, acme, "/v1/account/summary", 422, period="weekly")
    unauthorised = await stack.http.get("/v1/account/summary")
    assert unauthorised.status_code == 401
    assert unauthorised.headers["content-type"] == PROBLEM
