"""Issue 17: `GET /v1/credits/balance/explain` and `as_of`/`by` on `GET /v1/credits/balance`,
on the real writer and projector (Kafka, Postgres) with the API served in process.

One account's history touches what explain explains: a subscription spent, a gift that expires
with credit left, a promotional grant only for another endpoint, an adjustment (credit tied to no
grant), a call that leaves something owed, a failed call (charged and refunded), and a scheduled
grant whose activation pays what was owed before the next call draws it. Then:
- explain's figures are the balance endpoint's, and each grant's are the ones worked out here;
- `balance?as_of=T&by=B` answers what `creditledger balance ACCOUNT --as-of T --by B` prints
  (the function the CLI calls), on both clocks, at every instant the ledger knows and before any
  activity; explain at those instants, on both clocks, agrees with it;
- where something is due that the writer has not written yet (an expiry, an activation), the
  live balance, the balance as of now and as of an instant in the gap, the CLI and explain, on
  both clocks, all apply it;
- bad `as_of` and `by` answer 422 problem+json; the fast-read middleware leaves these requests
  to the route.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.history import balance_as_of
from services.history.as_of import TimeAxis
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import Customer, api_client, new_customer
from tests.messages import T0, at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration

ACCOUNT = "explained"
SCAN = "POST /v1/scanner/scan"
OTHER = "POST /v1/other"
PROBLEM = "application/problem+json"
QUIET_SCHEDULER_S = 3600.0  # no scheduler traffic: the test's own commands decide what is due


@dataclass
class Stack:
    driver: Driver
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    settings = namespace.model_copy(update={"expiry_scan_interval_s": QUIET_SCHEDULER_S})
    api_settings = settings.model_copy(
        update={"api_rate_limit_burst": 100_000, "api_rate_limit_per_s": 100_000.0}
    )
    async with running(settings, ("writer", "projector")) as pipeline:
        driver = Driver(settings, pipeline.pool, pipeline.producer, pipeline.tasks)
        async with api_client(api_settings, pipeline.pool, pipeline.producer) as http:
            yield Stack(driver, http, api_settings)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def get(
    stack: Stack, who: Customer, path: str, status: int = 200, /, **params: Any
) -> dict[str, Any]:
    response = await stack.http.get(path, params=params, headers=who.headers)
    assert response.status_code == status, (path, params, response.text)
    if status >= 400:
        assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


Probe = Callable[[Customer, datetime], Awaitable[None]]


async def story(stack: Stack, probe: Probe | None = None) -> Customer:
    """The history of the module docstring, in phases so the writer applies it in this order.
    `probe(who, instant)` runs where something is due that the writer has not yet written (the
    scheduler is quiet): the gift's expiry at(30), the scheduled grant's activation at(60)."""
    driver = stack.driver
    who = await new_customer(stack.http, stack.settings, ACCOUNT)
    await driver.commands(
        grant(ACCOUNT, 100, "sub", bucket="subscription", expires_at=at(60 * 24 * 365)),
        grant(ACCOUNT, 30, "gift", bucket="gift", name="Welcome", expires_at=at(30)),
        grant(ACCOUNT, 20, "promo", bucket="promotional", applies_to=[OTHER]),
    )
    await driver.settled()
    await driver.usage(
        usage(ACCOUNT, "r1", credits=40, occurred_at=at(1)),  # sub 40
        usage(ACCOUNT, "r2", credits=70, occurred_at=at(5)),  # sub 60, gift 10
    )
    await driver.settled()
    if probe is not None:
        await probe(who, T0 + timedelta(minutes=35))
    # At(40): the gift expired at(30) with 20 left; the adjustment is credit tied to no grant.
    await driver.commands(command("adjustment", ACCOUNT, "adj", amount=5, occurred_at=at(40)))
    await driver.settled()
    await driver.usage(
        usage(ACCOUNT, "r3", credits=30, occurred_at=at(45)),  # 5 from the pot, 25 owed
        usage(ACCOUNT, "r4", 500, credits=3, occurred_at=at(46)),  # owed 3, refunded at once
    )
    await driver.settled()
    await driver.commands(
        grant(ACCOUNT, 50, "later", occurred_at=at(50), effective_at=at(60))  # scheduled
    )
    await driver.settled()
    if probe is not None:
        await probe(who, T0 + timedelta(minutes=65))
    # At(70) the activation at(60) is written first: it pays the 25 owed, 25 left; r5 draws 5.
    await driver.usage(usage(ACCOUNT, "r5", credits=5, occurred_at=at(70)))
    await driver.settled()
    return who


def by_id(explained: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["grantId"]: g for g in explained["grants"]}


def adds_up(explained: dict[str, Any]) -> None:
    remaining = sum(g["remaining"] for g in explained["grants"])
    assert remaining + explained["unbucketed"] - explained["overage"] == explained["balance"]
    for g in explained["grants"]:
        moved = (g["granted"] - g["consumed"] + g["refunded"] - g["expired"] - g["voided"]
                 - g["adjusted"])  # fmt: skip
        assert moved == g["remaining"], g


async def test_explain_equals_the_balance_and_says_why(stack: Stack) -> None:
    who = await story(stack)
    balance = await get(stack, who, "/v1/credits/balance")
    explained = await get(stack, who, "/v1/credits/balance/explain")
    adds_up(explained)
    assert explained["accountId"] == ACCOUNT and explained["by"] == "recorded"
    for name in ("balance", "overage", "scheduled", "ledgerSeq"):
        assert explained[name] == balance[name], name
    kinds: dict[str, int] = {}
    for g in explained["grants"]:
        if g["status"] == "spendable":
            kinds[g["kind"]] = kinds.get(g["kind"], 0) + g["remaining"]
    if explained["unbucketed"]:
        kinds["unbucketed"] = explained["unbucketed"]
    assert kinds == {b["kind"]: b["balance"] for b in balance["buckets"] if b["balance"]}
    assert (explained["balance"], explained["overage"], explained["unbucketed"]) == (40, 0, 0)

    grants = by_id(explained)
    figures = ("granted", "paidOverage", "consumed", "refunded", "expired", "remaining")
    assert {g: tuple(grants[g][f] for f in figures) for g in grants} == {
        "sub": (100, 0, 100, 0, 0, 0),
        "gift": (30, 0, 10, 0, 20, 0),
        "promo": (20, 0, 0, 0, 0, 20),
        "later": (25, 25, 5, 0, 0, 20),
    }
    assert {g: (grants[g]["status"], grants[g]["drawOrder"]) for g in grants} == {
        "sub": ("spent", None), "gift": ("expired", None),
        "promo": ("spendable", 1), "later": ("spendable", 2),
    }  # fmt: skip
    assert [g["grantId"] for g in explained["grants"]][:2] == ["promo", "later"]
    assert grants["promo"]["why"] == (
        "priority 20, then never expires, then granted 2026-11-21T10:00:00Z (ledger seq 3);"
        f" only for {OTHER}"
    )
    assert grants["later"]["why"].startswith("priority 40, then never expires, then granted")
    assert grants["later"]["why"].endswith("; paid 25 owed credits when it became spendable")
    assert grants["gift"]["why"] == "expired 2026-11-21T10:30:00Z: 20 credits left with it"
    assert grants["gift"]["name"] == "Welcome"
    assert explained["overageWhy"] == "nothing is owed"

    recent = [
        (c["requestId"], c["credits"], [(d["grantId"], d["amount"]) for d in c["draws"]],
         c["owed"], c["refunded"])
        for c in explained["recentConsumes"]
    ]  # fmt: skip
    assert recent == [
        ("r5", 5, [("later", 5)], 0, 0),
        ("r4", 3, [], 3, 3),
        ("r3", 30, [(None, 5)], 25, 0),
        ("r2", 70, [("sub", 60), ("gift", 10)], 0, 0),
        ("r1", 40, [("sub", 40)], 0, 0),
    ]

    # Just after r3, by event time: what r3 left owed, and why.
    just_after = z(T0 + timedelta(minutes=47))
    owed = await get(stack, who, "/v1/credits/balance/explain", as_of=just_after, by="occurred")
    adds_up(owed)
    # The promotional 20 are there, for another endpoint; r3 left 25 owed (r4's 3 came back).
    assert (owed["balance"], owed["overage"], owed["scheduled"]) == (-5, 25, 0)
    assert owed["overageWhy"] == (
        "25 credits owed: what no spendable credit covered of 1 call since the balance last"
        " stood at zero or above (the latest: request r3, 25 owed, at 2026-11-21T10:45:00Z);"
        " the next grant that becomes spendable pays it off first"
    )
    assert [c["requestId"] for c in owed["recentConsumes"]] == ["r4", "r3", "r2", "r1"]
    # Before anything happened: an empty explanation.
    empty = await get(stack, who, "/v1/credits/balance/explain", as_of="2026-01-01", by="occurred")
    assert (empty["balance"], empty["grants"], empty["recentConsumes"]) == (0, [], [])


def figures_of(body: dict[str, Any]) -> tuple[int, int, int, int]:
    return (body["balance"], body["overage"], body["unbucketed"], body["scheduled"])


LIVE_FIELDS = ("balance", "reserved", "available", "overage", "scheduled", "grantedTotal",
               "consumedTotal", "buckets", "resetAt", "ledgerSeq")  # fmt: skip


async def test_in_the_due_gap_every_read_agrees(stack: Stack) -> None:
    """Something is due that the writer has not written yet (the gift expired at(30) with 20
    left; the scheduled grant effective at(60)): the live balance, `/check`, the balance as of
    now (`by` alone, and `as_of`) on both clocks, the balance as of an instant in the gap and
    explain there all apply it, as the writer will."""
    seen: list[datetime] = []

    async def probe(who: Customer, gap: datetime) -> None:
        seen.append(gap)
        path = "/v1/credits/balance"
        live = await get(stack, who, path)
        # Not ledgerSeq: the live balance counts the due entries' seqs the writer has yet to
        # write (services/api/reads/balance.py: `figures.seq`); the others say the ledger's.
        money = [k for k in LIVE_FIELDS if k != "ledgerSeq"]
        expected = {k: live[k] for k in money}
        for by in ("recorded", "occurred"):
            now = await get(stack, who, path, by=by)  # `by` alone: as of now
            assert {k: now[k] for k in money} == expected, (gap, by, now)
            explained = await get(stack, who, f"{path}/explain", by=by)
            assert figures_of(explained) == figures_of(now), (gap, by)
        axes: tuple[TimeAxis, ...] = ("recorded", "occurred")
        for moment in (gap, datetime.now(UTC)):
            for by in axes:
                then = await get(stack, who, path, as_of=z(moment), by=by)
                why = await get(stack, who, f"{path}/explain", as_of=z(moment), by=by)
                adds_up(why)
                assert figures_of(then) == figures_of(why), (gap, moment, by, then, why)
                cli = await cli_answer(stack, moment, by)  # None: no entry yet (ledger time)
                assert cli == then or (cli is None and then["ledgerSeq"] == 0), (gap, moment, by)
        if gap == T0 + timedelta(minutes=35):  # the gift's 20 left: 150 - 40 - 70 - 20 = 20
            assert (live["balance"], live["scheduled"]) == (20, 0)
            kinds = {b["kind"]: b["balance"] for b in live["buckets"]}
            assert kinds == {"promotional": 20, "subscription": 0}
        else:  # the 50 are spendable and pay the 25 owed: 20 promo + 25
            assert (live["balance"], live["overage"], live["scheduled"]) == (45, 0, 0)

    await story(stack, probe)
    assert seen == [T0 + timedelta(minutes=m) for m in (35, 65)]


async def cli_answer(stack: Stack, moment: datetime, by: TimeAxis) -> dict[str, Any] | None:
    """What `creditledger balance ACCOUNT --as-of T --by B` prints (services/cli.py `_balance`:
    the same function, its JSON)."""
    result = await balance_as_of(stack.driver.pool, ACCOUNT, moment, by=by)
    if result is None:
        return None
    answer: dict[str, Any] = json.loads(json.dumps(result.to_json(), default=str))
    return answer


async def test_balance_as_of_answers_what_the_cli_answers(stack: Stack) -> None:
    who = await story(stack)
    entries = await stack.driver.entries(ACCOUNT)
    instants = sorted(
        {e["recorded_at"] for e in entries}
        | {e["occurred_at"] for e in entries}
        | {e["occurred_at"] - timedelta(microseconds=1) for e in entries}
    )
    axes: tuple[TimeAxis, ...] = ("recorded", "occurred")
    for by in axes:
        for moment in instants:
            api = await get(stack, who, "/v1/credits/balance", as_of=z(moment), by=by)
            expected = await cli_answer(stack, moment, by)
            assert expected is not None or api["ledgerSeq"] == 0, (by, moment)
            if expected is None:
                continue
            assert api == expected, (by, moment)
            assert sum(b["balance"] for b in api["buckets"]) == api["balance"]
            # Explain at the same instant tells of the same entries, with the same due rules:
            # on ledger time, every recorded instant here is after the gift's expiry and the
            # scheduled grant's effective_at (event time is in the past), so a prefix without
            # their entries still has them due.
            why = await get(stack, who, "/v1/credits/balance/explain", as_of=z(moment), by=by)
            adds_up(why)
            assert figures_of(why) == figures_of(api), (by, moment, why)

    # Before any activity, on either clock: the empty balance (the CLI: "no ledger entry").
    for by in axes:
        before = await get(stack, who, "/v1/credits/balance", as_of="2026-01-01T00:00:00Z", by=by)
        assert await cli_answer(stack, datetime(2026, 1, 1, tzinfo=UTC), by) is None
        assert (before["balance"], before["buckets"], before["ledgerSeq"]) == (0, [], 0)
        assert before["lastUpdated"] is None and before["asOf"] == "2026-01-01T00:00:00Z"

    # As of now by ledger time: the whole ledger, the live balance's figures.
    now = await get(stack, who, "/v1/credits/balance", by="recorded")
    live = await get(stack, who, "/v1/credits/balance")
    assert "asOf" in now and "asOf" not in live  # the middleware left `by` to the route
    assert {k: now[k] for k in LIVE_FIELDS} == {k: live[k] for k in LIVE_FIELDS}


async def test_as_of_and_by_are_checked(stack: Stack) -> None:
    who = await new_customer(stack.http, stack.settings, "checked")
    for path in ("/v1/credits/balance", "/v1/credits/balance/explain"):
        for params in (
            {"as_of": "yesterday"},
            {"as_of": "2026-11-21T10:00:00"},  # no offset
            {"as_of": "2026-13-01"},
            {"by": "wall"},
            {"as_of": "2026-11-21T10:00:00Z", "by": "processed"},
        ):
            body = await get(stack, who, path, 422, **params)
            assert body["status"] == 422 and body["type"].endswith("invalid-request"), body
    # An account with no activity: zero, now and then.
    explained = await get(stack, who, "/v1/credits/balance/explain")
    assert (explained["balance"], explained["grants"], explained["ledgerSeq"]) == (0, [], 0)
    then = await get(stack, who, "/v1/credits/balance", as_of="2026-11-21T10:00:00+01:00")
    assert (then["balance"], then["by"], then["asOf"]) == (0, "recorded", "2026-11-21T09:00:00Z")
