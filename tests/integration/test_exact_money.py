"""Issue 12, exact money: every call charged or owed, every figure agreeing with the writer.

Each test reproduces one bullet of the issue's first list on the real writer and projector
(Kafka and Postgres) and the API served in process, and shows the contract v1.1 behaviour
("Money is exact"): scheduled grants, what is owed, the credit limit, the buckets, one count of
a call, point-in-time balances. The last test runs a mixed load over three accounts and reads
every figure the product shows for them against an expectation computed here by hand.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from projections.audit import audit
from services.history.as_of import AsOfBalance, TimeAxis, balance_as_of
from services.history.export import export_ledger
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import Customer, admin_headers, api_client, new_customer
from tests.messages import T0, at, command, grant, usage
from tests.pipeline import Driver, wait_until

pytestmark = pytest.mark.integration

SCAN = "POST /v1/scanner/scan"
OTHER = "POST /v1/other"
PING = "GET /v1/ping"
JOBS = "POST /v1/jobs"
PROBLEM = "application/problem+json"
FAR_FUTURE = at(60 * 24 * 365)  # a hold that must not expire while a test runs
QUIET_SCHEDULER_S = 3600.0  # the expiry scheduler scans once at start, then stays out of the way
FAST_SCHEDULER_S = 0.2


@dataclass
class Stack:
    driver: Driver
    http: httpx.AsyncClient
    settings: Settings


@asynccontextmanager
async def open_stack(namespace: Settings, scan_interval_s: float) -> AsyncIterator[Stack]:
    settings = namespace.model_copy(update={"expiry_scan_interval_s": scan_interval_s})
    # The API gets a roomy rate limit: these tests read much faster than any client would.
    api_settings = settings.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(settings, ("writer", "projector")) as pipeline:
        driver = Driver(settings, pipeline.pool, pipeline.producer, pipeline.tasks)
        async with api_client(api_settings, pipeline.pool, pipeline.producer) as http:
            yield Stack(driver, http, api_settings)


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    """No scheduler traffic: its `expire` commands would count in the writer's offsets and let
    `Driver.settled` return before the test's own records are all in."""
    async with open_stack(namespace, QUIET_SCHEDULER_S) as opened:
        yield opened


@pytest.fixture
async def fast_stack(namespace: Settings) -> AsyncIterator[Stack]:
    """The scheduler scans often: it fires at a scheduled grant's `effective_at`."""
    async with open_stack(namespace, FAST_SCHEDULER_S) as opened:
        yield opened


def z(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, as the API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def get(
    stack: Stack, who: Customer, path: str, status: int = 200, /, **params: Any
) -> httpx.Response:
    response = await stack.http.get(path, params=params, headers=who.headers)
    assert response.status_code == status, (path, params, response.text)
    if status >= 400:
        assert response.headers["content-type"] == PROBLEM
    return response


async def balance_of(stack: Stack, who: Customer) -> dict[str, Any]:
    """The balance, checked for what holds on every answer: the buckets add up to `balance`,
    `available` = `balance` - `reserved`, the header says `available`."""
    response = await get(stack, who, "/v1/credits/balance")
    body: dict[str, Any] = response.json()
    assert sum(b["balance"] for b in body["buckets"]) == body["balance"], body
    assert body["available"] == body["balance"] - body["reserved"], body
    assert response.headers["X-Credits-Remaining"] == str(body["available"]), body
    assert body["overage"] >= 0
    return body


async def check(stack: Stack, who: Customer, cost: int, endpoint: str | None = None) -> int:
    """`/check`'s status (200 or 402); either way the body and header say `available`."""
    params: dict[str, Any] = {"cost": cost}
    if endpoint is not None:
        params["endpoint"] = endpoint
    response = await stack.http.get("/v1/credits/check", params=params, headers=who.headers)
    assert response.status_code in (200, 402), response.text
    body = response.json()
    assert body["allowed"] is (response.status_code == 200), body
    assert response.headers["X-Credits-Remaining"] == str(body["available"])
    return response.status_code


async def grants_of(stack: Stack, who: Customer) -> dict[str, tuple[str, int, int]]:
    """{grant id: (state, amount, remaining)}, archived ones too."""
    body = (await get(stack, who, "/v1/credits/grants", include_archived="true")).json()
    return {g["id"]: (g["state"], g["amount"], g["remaining"]) for g in body["data"]}


def draws(entries: Sequence[asyncpg.Record]) -> list[tuple[str, str | None, int]]:
    return [(e["reason"], e["bucket_grant_id"], e["delta"]) for e in entries]


def kinds(buckets: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    return {b["kind"]: (b["amount"], b["balance"]) for b in buckets}


def as_of_kinds(result: AsOfBalance) -> dict[str, tuple[int, int]]:
    return {b.kind: (b.amount, b.balance) for b in result.buckets}


async def alerts_of(settings: Settings, account_id: str) -> list[str]:
    """The alert types on `credits.alerts.v1` for one account, in order, read to the end of the
    topic (after `Driver.settled` the outbox is drained: every alert is on it)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.alerts_topic, p) for p in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        values: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while True:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            assert time.monotonic() < deadline, "the alerts topic did not read to its end"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(json.loads(r.value) for r in batch if r.value is not None)
    finally:
        await consumer.stop()
    return [v["type"] for v in values if v["account_id"] == account_id]


# --- bullet 1: a grant effective next month ----------------------------------------------------


async def test_a_grant_effective_next_month_is_scheduled_not_spendable(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    later = await new_customer(http, settings, "later")
    sched = await new_customer(http, settings, "sched")
    now = now_s()
    next_month = now + timedelta(days=30)
    await driver.commands(
        grant("later", 100, "later-next", occurred_at=z(now), effective_at=z(next_month)),
        grant("sched", 250, "sched-now", occurred_at=z(now)),
        grant("sched", 100, "sched-next", occurred_at=z(now), effective_at=z(next_month)),
    )
    await driver.settled()

    # The only credit starts next month: nothing to spend now, and /check says so.
    body = await balance_of(stack, later)
    assert (body["balance"], body["available"], body["reserved"]) == (0, 0, 0)
    assert (body["scheduled"], body["overage"], body["grantedTotal"]) == (100, 0, 0)
    assert body["buckets"] == []
    assert await check(stack, later, 5) == 402
    assert await grants_of(stack, later) == {"later-next": ("scheduled", 100, 0)}
    listed = (await get(stack, later, "/v1/credits/grants")).json()["data"]
    assert listed[0]["schedule"]["effectiveAt"] == z(next_month)
    opening = (await driver.entries("later"))[0]
    assert (opening["reason"], opening["bucket_grant_id"], opening["delta"]) == (
        "grant", "later-next", 0,
    )  # fmt: skip
    assert opening["metadata"]["scheduled"] == 100

    body = await balance_of(stack, sched)
    assert (body["balance"], body["available"], body["scheduled"]) == (250, 250, 100)
    assert kinds(body["buckets"]) == {"purchased": (250, 250)}
    assert await check(stack, sched, 250) == 200
    assert await check(stack, sched, 251) == 402

    # A 260-credit call on 250 spendable: draws the 250 and owes the other 10.
    await driver.usage(usage("sched", "big", credits=260, occurred_at=z(now)))
    await driver.settled()
    entries = await driver.entries("sched")
    assert draws(entries[2:]) == [("consume", "sched-now", -250), ("consume", None, -10)]
    assert entries[-1]["metadata"]["owed"] == 10
    assert all("beyond_credit_limit" not in e["metadata"] for e in entries)
    body = await balance_of(stack, sched)
    assert (body["balance"], body["available"], body["overage"]) == (-10, -10, 10)
    assert (body["scheduled"], body["consumedTotal"]) == (100, 260)
    assert kinds(body["buckets"]) == {"purchased": (250, 0), "overage": (10, -10)}
    assert await check(stack, sched, 1) == 402
    assert await grants_of(stack, sched) == {
        "sched-now": ("active", 250, 0), "sched-next": ("scheduled", 100, 0),
    }  # fmt: skip
    summary = (await get(stack, sched, "/v1/account/summary")).json()
    assert summary["overage"] == 10
    assert summary["creditBalance"]["balance"] == -10


async def test_a_scheduled_grant_becomes_spendable_at_effective_at_and_pays_what_is_owed(
    fast_stack: Stack,
) -> None:
    stack = fast_stack
    http, settings, driver = stack.http, stack.settings, stack.driver
    soon = await new_customer(http, settings, "soon")  # quiet: the scheduler activates it
    cue = await new_customer(http, settings, "cue")  # a later call activates it
    now = now_s()
    effective = now + timedelta(seconds=8)
    await driver.commands(
        grant("soon", 250, "soon-now", occurred_at=z(now)),
        grant("soon", 40, "soon-later", occurred_at=z(now), effective_at=z(effective)),
        grant("cue", 250, "cue-now", occurred_at=z(now)),
        grant("cue", 40, "cue-later", occurred_at=z(now), effective_at=z(effective)),
    )
    await driver.settled()
    await driver.usage(
        usage("soon", "big", credits=260, occurred_at=z(now)),
        usage("cue", "big", credits=260, occurred_at=z(now)),
    )
    await driver.settled()
    assert datetime.now(UTC) < effective, "too slow: effective_at passed before the checks"
    for who in (soon, cue):
        body = await balance_of(stack, who)
        assert (body["balance"], body["overage"], body["scheduled"]) == (-10, 10, 40)

    # A call stamped after effective_at: the grant arrives (at effective_at) before it.
    await driver.usage(
        usage("cue", "after", credits=5, occurred_at=z(effective + timedelta(seconds=1)))
    )

    async def arrived() -> bool:
        activated = await driver.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE reason = 'grant' AND metadata ? 'activated'"
        )
        after = await driver.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE source = 'request:after'"
        )
        return int(activated) == 2 and int(after) == 1

    await wait_until(
        arrived, "both scheduled grants to become spendable", components=driver.components
    )
    await driver.settled()

    for account, who in (("soon", soon), ("cue", cue)):
        entries = await driver.entries(account)
        activation, payment = entries[4], entries[5]
        assert draws([activation, payment]) == [
            ("grant", f"{account}-later", 30), ("grant", None, 10),
        ]  # fmt: skip
        assert activation["occurred_at"] == effective
        assert activation["metadata"]["activated"] == 40
        assert payment["metadata"]["pays_overage"] == 10
        assert payment["metadata"]["grant_id"] == f"{account}-later"
        assert await grants_of(stack, who) == {
            f"{account}-now": ("active", 250, 0),
            f"{account}-later": ("active", 40, 30 if account == "soon" else 25),
        }
    assert draws((await driver.entries("soon"))[6:]) == []
    assert draws((await driver.entries("cue"))[6:]) == [("consume", "cue-later", -5)]
    body = await balance_of(stack, soon)
    assert (body["balance"], body["overage"], body["scheduled"]) == (30, 0, 0)
    assert (body["grantedTotal"], body["consumedTotal"]) == (250 + 30 + 10, 260)
    assert kinds(body["buckets"]) == {"purchased": (290, 30)}
    body = await balance_of(stack, cue)
    assert (body["balance"], body["overage"], body["scheduled"]) == (25, 0, 0)
    assert await alerts_of(settings, "soon") == ["depleted", "overage", "credit_limit_exceeded"]


# --- bullet 2: usage before every grant's effective_at ----------------------------------------


async def test_a_call_before_every_grants_effective_at_is_owed_not_free(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    early = await new_customer(http, settings, "early")
    next_month = now_s() + timedelta(days=30)
    await driver.commands(
        grant("early", 100, "early-g"),  # effective from its issue, at(0)
        grant("early", 20, "early-next", bucket="gift", effective_at=z(next_month)),
    )
    await driver.settled()
    await driver.usage(usage("early", "too-early", credits=7, occurred_at=at(-30)))
    await driver.settled()
    entries = await driver.entries("early")
    assert draws(entries[2:]) == [("consume", None, -7)]  # charged, not a 0-delta consume
    assert entries[2]["metadata"]["owed"] == 7
    assert "beyond_credit_limit" not in entries[2]["metadata"]
    body = await balance_of(stack, early)
    assert (body["balance"], body["overage"], body["consumedTotal"]) == (93, 7, 7)
    assert kinds(body["buckets"]) == {"purchased": (100, 100), "overage": (7, -7)}

    # Credit that was already spendable did not cover that call: it does not pay it off.
    await driver.usage(usage("early", "on-time", credits=3, occurred_at=at(5)))
    await driver.settled()
    assert draws((await driver.entries("early"))[3:]) == [("consume", "early-g", -3)]
    body = await balance_of(stack, early)
    assert (body["balance"], body["overage"], body["scheduled"]) == (90, 7, 20)
    assert kinds(body["buckets"]) == {"purchased": (100, 97), "overage": (7, -7)}
    days = (await get(stack, early, "/v1/credits/activity", **{"from": "2026-11-21"})).json()
    assert days["days"] == [{"day": "2026-11-21", "scans": 2, "credits": 10, "refunds": 0}]
    assert "overage" in await alerts_of(settings, "early")


# --- bullet 3: beyond the credit limit -------------------------------------------------------


async def test_beyond_the_credit_limit_calls_are_charged_in_full_alerting_once_per_crossing(
    stack: Stack,
) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    hot = await new_customer(http, settings, "hot")
    await driver.commands(
        grant("hot", 10, "hot-g1"), command("account_settings", "hot", "s1", credit_limit=5)
    )
    await driver.settled()
    await driver.usage(
        *(usage("hot", f"r{n}", credits=c, occurred_at=at(10 + n))
          for n, c in enumerate((8, 4, 6, 3)))
    )  # fmt: skip
    await driver.settled()
    entries = await driver.entries("hot")
    assert draws(entries[1:]) == [
        ("consume", "hot-g1", -8),
        ("consume", "hot-g1", -2), ("consume", None, -2),  # within the limit: 2 owed
        ("consume", None, -6),  # beyond it (8 owed, limit 5): still charged in full
        ("consume", None, -3),
    ]  # fmt: skip
    assert [e["metadata"].get("owed") for e in entries[3:]] == [2, 6, 3]
    body = await balance_of(stack, hot)
    assert (body["balance"], body["overage"], body["consumedTotal"]) == (-11, 11, 8 + 4 + 6 + 3)
    assert await check(stack, hot, 1) == 402
    assert sorted(await alerts_of(settings, "hot")) == [
        "credit_limit_exceeded", "depleted", "overage",
    ]  # fmt: skip

    # A new grant pays what is owed first; owing again is a second crossing, alerted again.
    await driver.commands(grant("hot", 20, "hot-g2", occurred_at=at(20)))
    await driver.settled()
    entries = await driver.entries("hot")
    assert draws(entries[6:]) == [("grant", "hot-g2", 9), ("grant", None, 11)]
    assert entries[7]["metadata"]["pays_overage"] == 11
    body = await balance_of(stack, hot)
    assert (body["balance"], body["overage"]) == (9, 0)
    await driver.usage(usage("hot", "s1", credits=10, occurred_at=at(21)))  # 1 owed, within
    await driver.settled()
    await driver.usage(usage("hot", "s2", credits=10, occurred_at=at(22)))  # 11 owed: beyond
    await driver.settled()
    body = await balance_of(stack, hot)
    assert (body["balance"], body["overage"]) == (-11, 11)
    alerts = await alerts_of(settings, "hot")
    assert sorted(alerts) == sorted(["credit_limit_exceeded", "depleted", "overage"] * 2)
    days = (await get(stack, hot, "/v1/credits/activity", **{"from": "2026-11-21"})).json()
    assert days["days"] == [
        {"day": "2026-11-21", "scans": 6, "credits": 8 + 4 + 6 + 3 + 10 + 10, "refunds": 0}
    ]


# --- bullet 4: buckets include unbucketed credit and what is owed -----------------------------


async def test_buckets_include_unbucketed_credit_and_overage(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    pot = await new_customer(http, settings, "pot")
    await driver.commands(command("adjustment", "pot", "adj", amount=6, reason="goodwill"))
    await driver.settled()
    body = await balance_of(stack, pot)
    assert (body["balance"], body["buckets"]) == (6, [
        {"kind": "unbucketed", "amount": 6, "balance": 6},
    ])  # fmt: skip
    await driver.commands(grant("pot", 10, "pot-g", occurred_at=at(3)))
    await driver.settled()
    body = await balance_of(stack, pot)
    assert kinds(body["buckets"]) == {"purchased": (10, 10), "unbucketed": (6, 6)}
    await driver.usage(usage("pot", "r1", credits=20, occurred_at=at(5)))
    await driver.settled()
    entries = await driver.entries("pot")
    assert draws(entries[2:]) == [
        ("consume", "pot-g", -10), ("consume", None, -6), ("consume", None, -4),
    ]  # fmt: skip
    assert "owed" not in entries[3]["metadata"]
    assert entries[4]["metadata"]["owed"] == 4
    body = await balance_of(stack, pot)
    assert (body["balance"], body["overage"]) == (-4, 4)
    assert kinds(body["buckets"]) == {"purchased": (10, 0), "overage": (4, -4)}
    past = await balance_as_of(driver.pool, "pot", datetime.now(UTC))
    assert past is not None and as_of_kinds(past) == kinds(body["buckets"])


# --- bullet 5: a negative adjustment and the credit limit -----------------------------------


async def test_a_negative_adjustment_respects_the_credit_limit_unless_allow_negative(
    stack: Stack,
) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    neg = await new_customer(http, settings, "neg")
    await driver.commands(
        grant("neg", 10, "neg-g"), command("account_settings", "neg", "s1", credit_limit=5)
    )
    await driver.settled()
    await driver.commands(
        command("adjustment", "neg", "adj-1", amount=-20, reason="too far"),  # available -10
        command("adjustment", "neg", "adj-2", amount=-15, reason="to the limit"),  # -5: allowed
        command("adjustment", "neg", "adj-3", amount=-1, reason="one past"),  # -6
        command("adjustment", "neg", "adj-4", amount=-941, reason="write-off",
                allow_negative=True),
    )  # fmt: skip
    await driver.settled()
    admin = admin_headers(settings)
    for command_id, want in (("adj-1", "rejected"), ("adj-2", "applied"),
                             ("adj-3", "rejected"), ("adj-4", "applied")):  # fmt: skip
        status, reason = await driver.command_status("neg", command_id)
        answer = await http.get(f"/v1/admin/commands/{command_id}", headers=admin)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], status) == (want, want), command_id
        if want == "rejected":
            assert (reason or "").startswith("insufficient-credits"), reason
            assert answer.json()["reason"].startswith("insufficient-credits")
    entries = await driver.entries("neg")
    assert draws(entries[1:]) == [
        ("adjustment", "neg-g", -10), ("adjustment", None, -5), ("adjustment", None, -941),
    ]  # fmt: skip
    body = await balance_of(stack, neg)
    assert (body["balance"], body["overage"]) == (-946, 946)
    assert kinds(body["buckets"]) == {"purchased": (10, 0), "overage": (946, -946)}

    # The admin API's adjustment goes the same way.
    answer = await http.post(
        "/v1/admin/accounts/neg/adjustments", json={"amount": -1, "reason": "api"}, headers=admin
    )
    assert answer.status_code == 202, answer.text
    driver.published += 1  # published by the API, not the driver: settle counts it too
    await driver.settled()
    command_id = answer.json()["commandId"]
    decided = (await http.get(f"/v1/admin/commands/{command_id}", headers=admin)).json()
    assert decided["status"] == "rejected"
    assert decided["reason"].startswith("insufficient-credits")
    assert (await balance_of(stack, neg))["balance"] == -946


# --- bullet 6: /check honours credit_limit and applies_to -----------------------------------


async def test_check_honours_the_credit_limit_and_applies_to_as_the_writer_charges(
    stack: Stack,
) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    lim = await new_customer(http, settings, "lim")
    scoped = await new_customer(http, settings, "scoped")
    await driver.commands(
        grant("lim", 10, "lim-g"),
        command("account_settings", "lim", "s1", credit_limit=20),
        grant("scoped", 10, "scoped-g", applies_to=[SCAN]),
    )
    await driver.settled()
    assert await check(stack, lim, 30) == 200  # 10 drawn, 20 owed: within the limit of 20
    within = (await get(stack, lim, "/v1/credits/check", cost=30)).json()
    assert (within["available"], within["owed"]) == (10, 20)
    assert await check(stack, lim, 31) == 402
    assert await check(stack, scoped, 5, SCAN) == 200
    assert await check(stack, scoped, 10, SCAN) == 200
    assert await check(stack, scoped, 11, SCAN) == 402
    assert await check(stack, scoped, 5, OTHER) == 402  # no bucket covers OTHER; limit 0

    # The writer charges what /check answered.
    await driver.usage(
        usage("lim", "r1", credits=30, occurred_at=at(5)),
        usage("scoped", "r1", credits=5, endpoint=OTHER, occurred_at=at(5)),
    )
    await driver.settled()
    assert draws((await driver.entries("lim"))[1:]) == [
        ("consume", "lim-g", -10), ("consume", None, -20),
    ]  # fmt: skip
    body = await balance_of(stack, lim)
    assert (body["balance"], body["overage"]) == (-20, 20)
    assert await check(stack, lim, 1) == 402
    assert await check(stack, lim, 0) == 200
    assert "credit_limit_exceeded" not in await alerts_of(settings, "lim")
    assert draws((await driver.entries("scoped"))[1:]) == [("consume", None, -5)]
    body = await balance_of(stack, scoped)
    assert (body["balance"], body["overage"]) == (5, 5)
    assert kinds(body["buckets"]) == {"purchased": (10, 10), "overage": (5, -5)}
    assert await check(stack, scoped, 1, SCAN) == 402  # what is owed is over the limit of 0


# --- bullet 7: one count of a call -----------------------------------------------------------


async def test_activity_counts_charged_calls_once_and_a_capture_as_one_call(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    act = await new_customer(http, settings, "act")
    await driver.commands(grant("act", 5, "act-gift", bucket="gift"), grant("act", 30, "act-paid"))
    await driver.settled()
    await driver.commands(
        command("hold", "act", "h1", hold_id="hold-1", amount=25, expires_at=FAR_FUTURE),
        command("capture", "act", "cap1", hold_id="hold-1", request_id="job-1", endpoint=JOBS,
                occurred_at=at(3)),
    )  # fmt: skip
    await driver.settled()
    await driver.usage(
        usage("act", "c1", credits=14, occurred_at=at(4)),  # 10 drawn, 4 owed: three entries
        usage("act", "c2", credits=0, endpoint=PING, occurred_at=at(5), latency_ms=3),  # free
        usage("act", "c3", 500, credits=4, occurred_at=at(6)),  # consumed and refunded
    )
    await driver.settled()
    entries = await driver.entries("act")
    by_source: dict[str, list[tuple[str, str | None, int]]] = defaultdict(list)
    for e in entries:
        by_source[e["source"]].extend(draws([e]))
    assert by_source["request:job-1"] == [("consume", "act-gift", -5), ("consume", "act-paid", -20)]
    assert by_source["request:c1"] == [("consume", "act-paid", -10), ("consume", None, -4)]
    assert by_source["request:c3"] == [("consume", None, -4)]
    assert by_source["refund:c3"] == [("refund", None, 4)]
    assert "request:c2" not in by_source

    span = {"from": "2026-11-21", "to": "2026-11-22"}
    days = (await get(stack, act, "/v1/credits/activity", **span)).json()["days"]
    assert days == [{"day": "2026-11-21", "scans": 2, "credits": 25 + 14, "refunds": 4}]
    rows = (await get(stack, act, "/v1/usage", **span)).json()["rows"]
    assert {r["key"]: (r["requests"], r["successfulRequests"], r["failedRequests"],
                       r["credits"]) for r in rows} == {
        JOBS: (1, 1, 0, 25), PING: (1, 1, 0, 0), SCAN: (2, 1, 1, 14),
    }  # fmt: skip
    summary = (await get(stack, act, "/v1/account/summary")).json()
    assert summary["totalRequestsAllTime"] == 4
    body = await balance_of(stack, act)
    assert (body["balance"], body["overage"], body["consumedTotal"]) == (-4, 4, 39)


# --- bullet 8: point in time, by event time --------------------------------------------------


async def test_balance_as_of_by_occurred_counts_grants_from_effective_at(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    await new_customer(http, settings, "pit")
    await new_customer(http, settings, "back")
    await driver.commands(
        grant("pit", 50, "pit-g", effective_at=at(60)),  # issued at(0): scheduled until at(60)
        grant("back", 50, "back-g", occurred_at=at(60), effective_at=at(0)),  # backdated
    )
    await driver.settled()
    await driver.usage(
        usage("pit", "p1", credits=7, occurred_at=at(30)),  # before the grant: owed
        usage("back", "b1", credits=7, occurred_at=at(30)),  # drawn from the backdated grant
    )
    await driver.settled()
    await driver.usage(usage("pit", "p2", credits=5, occurred_at=at(90)))
    await driver.settled()
    assert draws(await driver.entries("pit")) == [
        ("grant", "pit-g", 0), ("consume", None, -7),
        ("grant", "pit-g", 43), ("grant", None, 7),  # the activation at(60) pays the 7 first
        ("consume", "pit-g", -5),
    ]  # fmt: skip
    assert draws(await driver.entries("back")) == [
        ("grant", "back-g", 50),
        ("consume", "back-g", -7),
    ]

    def minutes(m: float) -> datetime:
        return T0 + timedelta(minutes=m)

    async def occurred(account: str, m: float) -> tuple[Any, ...] | None:
        result = await balance_as_of(driver.pool, account, minutes(m), by="occurred")
        if result is None:
            return None
        return (result.balance, result.overage, result.scheduled, result.granted_total,
                as_of_kinds(result))  # fmt: skip

    # (balance, overage, scheduled, grantedTotal, {kind: (amount, balance)})
    assert await occurred("pit", -1) is None
    assert await occurred("pit", 10) == (0, 0, 50, 0, {})
    assert await occurred("pit", 45) == (-7, 7, 50, 0, {"overage": (7, -7)})  # owed is shown
    assert await occurred("pit", 75) == (43, 0, 0, 50, {"purchased": (50, 43)})
    assert await occurred("pit", 100) == (38, 0, 0, 50, {"purchased": (50, 38)})
    assert await occurred("back", -1) is None
    assert await occurred("back", 15) == (50, 0, 0, 50, {"purchased": (50, 50)})
    assert await occurred("back", 45) == (43, 0, 0, 50, {"purchased": (50, 43)})  # not -7

    # No impossible state at any instant: below zero only as far as is shown owed.
    for account in ("pit", "back"):
        instants = {m for e in await driver.entries(account) for m in (
            e["occurred_at"], e["occurred_at"] - timedelta(microseconds=1),
            e["occurred_at"] + timedelta(seconds=1))}  # fmt: skip
        instants |= {minutes(0), minutes(60), minutes(60) - timedelta(microseconds=1)}
        for moment in sorted(instants):
            result = await balance_as_of(driver.pool, account, moment, by="occurred")
            if result is None:
                continue
            assert sum(b.balance for b in result.buckets) == result.balance, (account, moment)
            assert result.balance >= -result.overage, (account, moment, result)
            if result.granted_total == 0 and result.balance < 0:
                assert result.overage == -result.balance, (account, moment, result)

    # The command line gives the same answer.
    env = {**os.environ, "CREDITLEDGER_DATABASE_URL": str(settings.database_url),
           "CREDITLEDGER_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap)}  # fmt: skip
    cli = Path(sys.executable).parent / "creditledger"
    process = await asyncio.create_subprocess_exec(
        str(cli), "balance", "pit", "--as-of", at(45), "--by", "occurred",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    printed = json.loads(out)
    assert (printed["balance"], printed["overage"], printed["grantedTotal"]) == (-7, 7, 0)
    assert (printed["scheduled"], kinds(printed["buckets"])) == (50, {"overage": (7, -7)})


# --- every figure agrees ----------------------------------------------------------------------


@dataclass
class Expected:
    """What an account must show, computed in the test from the load it was sent."""

    balance: int
    scheduled: int
    overage: int
    granted_total: int
    consumed_total: int
    buckets: dict[str, tuple[int, int]]  # kind -> (amount, balance)
    grants: dict[str, tuple[str, int, int]]  # id -> (state, amount, remaining)
    scans: int
    refunds: int  # activity's: credits given back to calls, automatic refunds included
    usage: dict[str, tuple[int, int, int, int]]  # endpoint -> (requests, ok, failed, credits)
    allowed_up_to: int | None  # the largest cost /check allows; None: not even 1
    reset_at: str | None = None
    reserved: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # command id -> reason code

    @property
    def requests(self) -> int:
        return sum(r[0] for r in self.usage.values())

    @property
    def usage_credits(self) -> int:
        return sum(r[3] for r in self.usage.values())


async def test_every_read_agrees_with_the_writer_and_with_arithmetic(stack: Stack) -> None:
    http, settings, driver = stack.http, stack.settings, stack.driver
    who = {name: await new_customer(http, settings, name) for name in ("mix-a", "mix-b", "mix-c")}
    now = now_s()
    day = (now - timedelta(days=2)).replace(hour=10, minute=0, second=0)

    def t(minutes: float) -> str:
        return z(day + timedelta(minutes=minutes))

    sub_expires = now + timedelta(days=20)
    next_month = now + timedelta(days=30)

    # Phase 1: grants (one expiring, one effective after its issue, two next month), settings.
    await driver.commands(
        grant("mix-a", 100, "a-sub", bucket="subscription", occurred_at=t(0),
              expires_at=z(sub_expires)),
        grant("mix-a", 40, "a-gift", bucket="gift", occurred_at=t(0), effective_at=t(30)),
        grant("mix-a", 60, "a-next", occurred_at=t(0), effective_at=z(next_month)),
        command("account_settings", "mix-a", "a-set", occurred_at=t(1), credit_limit=10,
                low_balance_threshold=20),
        grant("mix-b", 20, "b-paid", occurred_at=t(0), applies_to=[SCAN]),
        grant("mix-c", 50, "c-next", occurred_at=t(0), effective_at=z(next_month)),
        command("account_settings", "mix-c", "c-set", occurred_at=t(1), credit_limit=5),
    )  # fmt: skip
    await driver.settled()
    # Phase 2: calls on time, failed, free, on an endpoint no bucket covers, owed.
    await driver.usage(
        usage("mix-a", "a1", credits=30, occurred_at=t(10)),  # a-sub (a-gift not yet effective)
        usage("mix-a", "a2", 500, credits=5, occurred_at=t(15)),  # consumed and refunded
        usage("mix-a", "a3", credits=0, endpoint=PING, occurred_at=t(16)),  # free
        usage("mix-a", "a4", credits=20, occurred_at=t(40)),  # a-gift arrives at t(30) first
        usage("mix-b", "b1", credits=15, occurred_at=t(10)),  # b-paid 20 -> 5
        usage("mix-b", "b2", credits=12, endpoint=OTHER, occurred_at=t(20)),  # owed 12
        usage("mix-b", "b3", credits=9, occurred_at=t(30)),  # b-paid 5, owed 4
        usage("mix-c", "c1", credits=0, endpoint=PING, occurred_at=t(5)),  # free
        usage("mix-c", "c2", credits=3, occurred_at=t(10)),  # nothing spendable: owed 3
    )
    await driver.settled()
    # Phase 3: refunds, a hold and its capture, adjustments, a grant that pays what is owed.
    await driver.commands(
        command("refund", "mix-a", "a-rf", occurred_at=t(50), request_id="a1", amount=10,
                reason="partial"),
        command("hold", "mix-a", "a-hold", occurred_at=t(55), hold_id="a-h1", amount=30,
                expires_at=z(now + timedelta(days=10))),
        command("capture", "mix-a", "a-cap", occurred_at=t(60), hold_id="a-h1", amount=25,
                request_id="a-job", endpoint=JOBS),
        command("adjustment", "mix-a", "a-adj1", occurred_at=t(65), amount=7, reason="goodwill"),
        command("adjustment", "mix-a", "a-adj2", occurred_at=t(66), amount=-3, reason="fix"),
        grant("mix-b", 30, "b-gift", bucket="gift", occurred_at=t(40)),  # pays 16 owed first
        command("refund", "mix-b", "b-rf", occurred_at=t(45), request_id="b2", reason="oops"),
        command("adjustment", "mix-b", "b-adj1", occurred_at=t(50), amount=-30, reason="no"),
        command("adjustment", "mix-b", "b-adj2", occurred_at=t(51), amount=-30, reason="yes",
                allow_negative=True),
    )  # fmt: skip
    await driver.settled()
    # Phase 4: a late call, stamped before most of what came before it.
    await driver.usage(usage("mix-a", "a5", credits=8, occurred_at=t(5)))
    await driver.settled()

    # The expectation, by hand from the load above (nothing read back from the pipeline).
    a_sub_left = 100 - 30 - 20 + 10 - 25 - 3 - 8  # a1, a4, refund, capture, adj2, a5 (a2 nets 0)
    b_owed_before_gift = 12 + (9 - 5)
    expected = {
        "mix-a": Expected(
            balance=a_sub_left + 40 + 7, scheduled=60, overage=0,
            granted_total=100 + 40, consumed_total=30 + 20 + 25 + 8 - 10,
            buckets={"subscription": (100, a_sub_left), "gift": (40, 40), "unbucketed": (7, 7)},
            grants={"a-sub": ("active", 100, a_sub_left), "a-gift": ("active", 40, 40),
                    "a-next": ("scheduled", 60, 0)},
            scans=4, refunds=5 + 10,
            usage={SCAN: (4, 3, 1, 30 + 20 + 8 - 10), PING: (1, 1, 0, 0), JOBS: (1, 1, 0, 25)},
            allowed_up_to=a_sub_left + 40 + 7 + 10, reset_at=z(sub_expires),
        ),
        "mix-b": Expected(
            balance=(20 + 30) - (15 + 12 + 9) + 12 - 30, scheduled=0,
            overage=30 - (30 - b_owed_before_gift) - 12,  # adj2: 14 from b-gift, 12 pot, 4 owed
            granted_total=20 + (30 - b_owed_before_gift) + b_owed_before_gift,
            consumed_total=15 + 12 + 9 - 12,
            buckets={"purchased": (20, 0), "gift": (30, 0), "overage": (4, -4)},
            grants={"b-paid": ("active", 20, 0), "b-gift": ("active", 30, 0)},
            scans=2, refunds=12,
            usage={SCAN: (2, 2, 0, 15 + 9), OTHER: (1, 1, 0, 12 - 12)},
            allowed_up_to=None, rejected={"b-adj1": "insufficient-credits"},
        ),
        "mix-c": Expected(
            balance=-3, scheduled=50, overage=3, granted_total=0, consumed_total=3,
            buckets={"overage": (3, -3)}, grants={"c-next": ("scheduled", 50, 0)},
            scans=1, refunds=0, usage={SCAN: (1, 1, 0, 3), PING: (1, 1, 0, 0)},
            allowed_up_to=5 - 3,  # limit 5, 3 owed
        ),
    }  # fmt: skip
    assert expected["mix-b"].balance == -4 and expected["mix-b"].overage == 4  # the arithmetic

    async def nothing_due() -> bool:
        due = await driver.pool.fetchval(
            "SELECT count(*) FROM writer_accounts WHERE next_due_at <= now()"
        )
        return int(due) == 0

    await wait_until(nothing_due, "no activation or expiry left due", components=driver.components)

    report = await audit(driver.pool)
    assert (report.accounts, report.drifts) == (3, [])
    moment = datetime.now(UTC)
    summary_period = "yearly"
    in_period = day.year == moment.year
    for account, want in expected.items():
        customer = who[account]
        # balance
        body = await balance_of(stack, customer)
        got = (body["balance"], body["reserved"], body["scheduled"], body["overage"],
               body["grantedTotal"], body["consumedTotal"], kinds(body["buckets"]),
               body["resetAt"])  # fmt: skip
        assert got == (want.balance, want.reserved, want.scheduled, want.overage,
                       want.granted_total, want.consumed_total, want.buckets,
                       want.reset_at), account  # fmt: skip
        # check
        if want.allowed_up_to is None:
            assert await check(stack, customer, 1) == 402, account
        else:
            assert await check(stack, customer, want.allowed_up_to) == 200, account
            assert await check(stack, customer, want.allowed_up_to + 1) == 402, account
        # grants: the same credit as the buckets, grant by grant
        grants = await grants_of(stack, customer)
        assert grants == want.grants, account
        per_kind: dict[str, tuple[int, int]] = {}
        listed = (await get(stack, customer, "/v1/credits/grants")).json()["data"]
        for g in listed:
            if g["state"] == "active":
                amount, left = per_kind.get(g["bucket"], (0, 0))
                per_kind[g["bucket"]] = (amount + g["amount"], left + g["remaining"])
        assert per_kind == {k: v for k, v in want.buckets.items()
                            if k not in ("unbucketed", "overage")}, account  # fmt: skip
        assert sum(g["amount"] for g in listed if g["state"] == "scheduled") == want.scheduled
        # activity and usage: one count of each charged call, the same credits
        span = {"from": day.date().isoformat(), "to": (day + timedelta(days=1)).date().isoformat()}
        days = (await get(stack, customer, "/v1/credits/activity", **span)).json()["days"]
        assert days == [
            {
                "day": day.date().isoformat(),
                "scans": want.scans,
                "credits": want.consumed_total,
                "refunds": want.refunds,
            }
        ], account
        rows = (await get(stack, customer, "/v1/usage", **span)).json()["rows"]
        assert {r["key"]: (r["requests"], r["successfulRequests"], r["failedRequests"],
                           r["credits"]) for r in rows} == want.usage, account  # fmt: skip
        assert want.usage_credits == want.consumed_total == sum(d["credits"] for d in days)
        # summary
        summary = (await get(stack, customer, "/v1/account/summary",
                             period=summary_period)).json()  # fmt: skip
        assert summary["overage"] == want.overage, account
        assert summary["creditBalance"]["balance"] == want.balance, account
        assert kinds(summary["creditBalance"]["buckets"]) == want.buckets, account
        assert summary["totalRequestsAllTime"] == want.requests, account
        period_usage = summary["usage"]
        assert (period_usage["totalRequests"], period_usage["creditsConsumed"]) == (
            (want.requests, want.usage_credits) if in_period else (0, 0)
        ), account
        # balance --as-of now, on both time axes
        axes: tuple[TimeAxis, ...] = ("recorded", "occurred")
        for by in axes:
            result = await balance_as_of(driver.pool, account, moment, by=by)
            assert result is not None, (account, by)
            assert (result.balance, result.reserved, result.scheduled, result.overage,
                    result.granted_total, result.consumed_total, as_of_kinds(result)) == (
                want.balance, want.reserved, want.scheduled, want.overage,
                want.granted_total, want.consumed_total, want.buckets,
            ), (account, by)  # fmt: skip
        # export: the same ledger, and the same figures from it
        out = io.StringIO()
        written = await export_ledger(driver.pool, out, "jsonl", account_id=account)
        records = [json.loads(line) for line in out.getvalue().splitlines()]
        assert written == len(records) > 0
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        assert sum(r["delta"] for r in records) == records[-1]["balance_after"] == want.balance
        assert sum(r["reserved_delta"] for r in records) == want.reserved
        assert sum(r["delta"] for r in records if r["reason"] == "grant") == want.granted_total
        assert -sum(r["delta"] for r in records if r["reason"] in ("consume", "refund")) == (
            want.consumed_total
        )
        assert all(r["delta"] != 0 for r in records if r["reason"] == "consume"), account
        assert all("beyond_credit_limit" not in r["metadata"] for r in records), account
        charged: dict[str, int] = defaultdict(int)
        for r in records:
            if r["reason"] == "consume":
                charged[r["source"].removeprefix("request:")] -= r["delta"]
            elif r["reason"] == "refund":
                charged[r["source"].removeprefix("refund:")] -= r["delta"]
        assert sum(1 for c in charged.values() if c > 0) == want.scans, account
        page = (await get(stack, customer, "/v1/credits/ledger", limit=500)).json()["data"]
        assert sorted(e["id"] for e in page) == sorted(r["id"] for r in records), account
        for command_id, code in want.rejected.items():
            status, reason = await driver.command_status(account, command_id)
            assert (status, (reason or "").split(":")[0]) == ("rejected", code)
