"""`creditledger demo`: a small realistic load through the real pipeline, checked over HTTP.

The load is spread over the last 30 UTC days, so the dashboard's 30-day charts show a month:
from midnight 29 days ago to `LAST_CALL_AFTER_MIDNIGHT` past today's midnight, which is never
more than that ahead of now, well inside the writer's `max_future_skew_s` (300 s by default),
so no call is refused as dated in the future.

It is deterministic per UTC day (fixed seed; ids and times follow from the day): running the
demo again the same day republishes the same events, the ledger treats them as duplicates and
the balances do not move. On another day it adds that day's month (a new grant, new ids) to
what is there, and checks the balances moved by exactly its own arithmetic.

Its prices are data, like any operator's: `DEMO_PRICES` becomes the price book's first version.
The demo's calls happened in the past, and a version set through the API can only start in the
future, so on a fresh installation (an empty book, no call priced yet) the demo seeds that
version through the store from `PRICES_FROM` (before any day's window); a replay carries it
like any other. Its own arithmetic then prices each call by its `occurred_at` under the book
read back from `GET /v1/admin/price-book` (calls before the book's first version by the
built-in prices, as the writer does).
"""

from __future__ import annotations

import asyncio
import json
import random
import time as clock
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from schemas.price_book import PriceBookBody, seed_first_version, versions_from_json
from services.core.pricing import PriceSchedule, PriceVersion
from services.platform.kafka import new_producer
from services.platform.postgres import create_pool
from services.platform.settings import Settings

PRICES_FROM = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW_DAYS = 30
LAST_CALL_AFTER_MIDNIGHT = timedelta(minutes=4)  # < max_future_skew_s: never refused
ENDPOINTS = ("POST /v1/scanner/scan", "POST /v1/scanner/deep-scan", "GET /v1/reports")
CATCH_UP_DEADLINE_S = 120.0
DEMO_PRICES = PriceBookBody(
    effective_at=PRICES_FROM,
    default_credits=1,
    prices={"POST /v1/scanner/scan": 1, "POST /v1/scanner/deep-scan": 5, "GET /v1/reports": 0},
)
DEMO_SCHEDULE = PriceSchedule(
    (PriceVersion(1, PRICES_FROM, DEMO_PRICES.default_credits, DEMO_PRICES.prices),)
)


@dataclass(frozen=True)
class DemoAccount:
    account_id: str
    name: str
    grant_credits: int
    calls: int
    low_balance_threshold: int | None = None
    auto_reload_threshold: int | None = None


DEMO_ACCOUNTS = (
    DemoAccount("demo_acme", "Acme Robotics", 10_000, 180),
    # A small pack with alert lines its month crosses: the dashboard's alerts and forecast.
    DemoAccount("demo_globex", "Globex Corporation", 600, 140, 450, 400),
)


@dataclass(frozen=True)
class DemoWindow:
    """One day's demo month: `start` is midnight 29 UTC days before `day`, the last call
    `LAST_CALL_AFTER_MIDNIGHT` after `day`'s midnight."""

    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day - timedelta(days=WINDOW_DAYS - 1), time(), UTC)

    @property
    def last_call(self) -> datetime:
        return datetime.combine(self.day, time(), UTC) + LAST_CALL_AFTER_MIDNIGHT

    @property
    def tag(self) -> str:
        return self.day.strftime("%Y%m%d")


def today_window(now: datetime | None = None) -> DemoWindow:
    return DemoWindow((now or datetime.now(UTC)).astimezone(UTC).date())


@dataclass
class Expected:
    balance: int = 0
    entries: int = 0


def grant_command(account: DemoAccount, window: DemoWindow | None = None) -> dict[str, Any]:
    window = window or today_window()
    return {
        "type": "grant", "command_id": f"demo-grant-{account.account_id}-{window.tag}",
        "account_id": account.account_id, "occurred_at": window.start.isoformat(),
        "amount": account.grant_credits, "bucket": "purchased", "name": "Starter pack",
        "source": f"invoice:demo-{account.account_id}-{window.tag}",
    }  # fmt: skip


def settings_command(account: DemoAccount, window: DemoWindow) -> dict[str, Any] | None:
    """The account's alert lines, before its grant (same partition: applied first)."""
    if account.low_balance_threshold is None and account.auto_reload_threshold is None:
        return None
    command: dict[str, Any] = {
        "type": "account_settings", "account_id": account.account_id,
        "command_id": f"demo-settings-{account.account_id}-{window.tag}",
        "occurred_at": window.start.isoformat(),
        "low_balance_threshold": account.low_balance_threshold,
    }  # fmt: skip
    if account.auto_reload_threshold is not None:
        command["auto_reload"] = {
            "threshold": account.auto_reload_threshold, "amount": account.grant_credits,
            "max_per_day": 1,
        }  # fmt: skip
    return command


def call_times(window: DemoWindow, calls: int, rng: random.Random) -> list[datetime]:
    """`calls` instants over the window, evenly spaced with a jitter, in order, all in it."""
    span_s = (window.last_call - window.start).total_seconds()
    step_s = span_s / calls
    times = []
    for n in range(calls):
        offset_s = (n + 1) * step_s - rng.uniform(0, 0.8) * step_s
        times.append(window.start + timedelta(seconds=round(offset_s)))
    times[-1] = window.last_call
    return times


def usage_events(
    account: DemoAccount, seed: int = 7, window: DemoWindow | None = None
) -> list[dict[str, Any]]:
    window = window or today_window()
    rng = random.Random(f"{seed}:{account.account_id}")
    times = call_times(window, account.calls, random.Random(f"{seed}:{account.account_id}:t"))
    events = []
    for n in range(account.calls):
        endpoint = rng.choice(ENDPOINTS)
        status = rng.choices((200, 201, 402, 404, 500, 503), weights=(80, 5, 3, 5, 4, 3))[0]
        event: dict[str, Any] = {
            "request_id": f"demo-{account.account_id}-{window.tag}-{n:05d}",
            "account_id": account.account_id, "key_id": "key_demo", "endpoint": endpoint,
            "status_code": status,
            "occurred_at": times[n].isoformat(),
            "latency_ms": rng.randint(20, 400),
        }  # fmt: skip
        if rng.random() < 0.3:  # some producers price the call themselves
            event["credits"] = rng.choice((1, 2, 3))
        events.append(event)
    return events


def expected_outcome(
    account: DemoAccount, events: list[dict[str, Any]], prices: PriceSchedule | None = None
) -> Expected:
    """The demo's arithmetic, independent of the ledger code: grant minus net consumes, each
    call priced by its own credits or the price book in force when it happened (by default the
    book the demo seeds: `DEMO_PRICES` from PRICES_FROM)."""
    prices = prices or DEMO_SCHEDULE
    expected = Expected(balance=account.grant_credits, entries=1)
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)
        credits = event.get("credits", prices.price(event["endpoint"], at))
        if credits == 0:
            continue  # free: no ledger entry
        failed = event["status_code"] >= 400
        expected.entries += 2 if failed else 1  # a failed call is consumed, then refunded
        expected.balance -= 0 if failed else credits
    return expected


async def run_demo(settings: Settings, api_url: str) -> int:
    assert settings.kafka_bootstrap is not None and settings.admin_token is not None
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    window = today_window()
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        await _seed_prices(settings)
        prices = await _price_book(http, admin)
        keys = {a.account_id: await _account_key(http, admin, a) for a in DEMO_ACCOUNTS}
        # What is there already: an earlier day's demo month, or this day's (then all repeats).
        before = {a.account_id: await _already(http, admin, keys, a, window) for a in DEMO_ACCOUNTS}
        producer = new_producer(settings)
        await producer.start()
        try:
            # Settings, then grants, applied before any usage: the calls draw from the grant.
            setup = [c for a in DEMO_ACCOUNTS if (c := settings_command(a, window))]
            setup += [grant_command(a, window) for a in DEMO_ACCOUNTS]
            await _publish(producer, settings.commands_topic, setup)
            await _wait_for_seq(
                http, keys, {k: b.entries + (not b.repeat) for k, b in before.items()}
            )
            loads = {a.account_id: usage_events(a, window=window) for a in DEMO_ACCOUNTS}
            await _publish(producer, settings.usage_topic, [e for ev in loads.values() for e in ev])
        finally:
            await producer.stop()
        expected = {
            a.account_id: before[a.account_id].plus(
                expected_outcome(a, loads[a.account_id], prices)
            )
            for a in DEMO_ACCOUNTS
        }
        await _wait_for_seq(http, keys, {k: e.entries for k, e in expected.items()})
        return await _report(http, keys, expected, loads, api_url, admin)


@dataclass(frozen=True)
class Before:
    """An account's ledger before this run; `repeat`: this day's month is in it already."""

    balance: int
    entries: int
    repeat: bool

    def plus(self, outcome: Expected) -> Expected:
        if self.repeat:
            return Expected(self.balance, self.entries)
        return Expected(self.balance + outcome.balance, self.entries + outcome.entries)


async def _already(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    account: DemoAccount,
    window: DemoWindow,
) -> Before:
    command_id = grant_command(account, window)["command_id"]
    status = await http.get(f"/v1/admin/commands/{command_id}", headers=admin)
    repeat = status.status_code == 200 and status.json().get("status") == "applied"
    if repeat:  # wait for the month to be in: a run of the same day may still be catching up
        expected = expected_outcome(account, usage_events(account, window=window))
        await _wait_for_seq(http, keys, {account.account_id: expected.entries}, lenient=True)
    body = (await _balance(http, keys[account.account_id])).json()
    return Before(body["balance"], body["ledgerSeq"], repeat)


async def _seed_prices(settings: Settings) -> None:
    """`DEMO_PRICES` as the book's first version, on a fresh installation only."""
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            seeded = await seed_first_version(conn, DEMO_PRICES)
    finally:
        await pool.close()
    if seeded is not None:
        print(f"price book: version {seeded.version} from {PRICES_FROM.isoformat()} (the demo's)")


async def _price_book(http: httpx.AsyncClient, admin: dict[str, str]) -> PriceSchedule:
    response = await http.get("/v1/admin/price-book", headers=admin)
    response.raise_for_status()
    return PriceSchedule(versions_from_json(response.json()["versions"]))


async def _account_key(http: httpx.AsyncClient, admin: dict[str, str], account: DemoAccount) -> str:
    created = await http.post(
        "/v1/admin/accounts",
        headers=admin,
        json={"account_id": account.account_id, "name": account.name},
    )
    created.raise_for_status()
    key = await http.post(f"/v1/admin/accounts/{account.account_id}/keys", headers=admin)
    key.raise_for_status()
    secret: str = key.json()["secret"]
    return secret


async def _publish(producer: AIOKafkaProducer, topic: str, messages: list[dict[str, Any]]) -> None:
    acks = [
        await producer.send(topic, json.dumps(m).encode(), key=m["account_id"].encode())
        for m in messages
    ]
    await asyncio.gather(*acks)


async def _wait_for_seq(
    http: httpx.AsyncClient, keys: dict[str, str], seq: dict[str, int], lenient: bool = False
) -> None:
    """Until each account's ledger reaches its seq; `lenient`: a few seconds, then go on."""
    deadline = clock.monotonic() + (5.0 if lenient else CATCH_UP_DEADLINE_S)
    for account_id, wanted in seq.items():
        while True:
            body = (await _balance(http, keys[account_id])).json()
            if body["ledgerSeq"] >= wanted:
                break
            if clock.monotonic() > deadline:
                if lenient:
                    return
                raise TimeoutError(
                    f"{account_id}: ledger at seq {body['ledgerSeq']}, want {wanted}"
                )
            await asyncio.sleep(0.1)


async def _balance(http: httpx.AsyncClient, secret: str) -> httpx.Response:
    response = await http.get("/v1/credits/balance", headers={"Authorization": f"Bearer {secret}"})
    response.raise_for_status()
    return response


async def _dashboard_link(http: httpx.AsyncClient, admin: dict[str, str], account_id: str) -> str:
    """A short-lived sign-in link (CREDITLEDGER_DASHBOARD_SESSION_TTL_S), or "" if refused."""
    made = await http.post(f"/v1/admin/accounts/{account_id}/dashboard-sessions", headers=admin)
    if made.status_code != 201:
        return ""
    body = made.json()
    return f"{body['url']}   (single use, until {body['expiresAt']})"


async def _report(
    http: httpx.AsyncClient,
    keys: dict[str, str],
    expected: dict[str, Expected],
    loads: dict[str, list[dict[str, Any]]],
    api_url: str,
    admin: dict[str, str],
) -> int:
    all_equal = True
    print(f"\ncreditledger demo: {sum(len(v) for v in loads.values())} usage events, "
          f"{len(keys)} accounts\n")  # fmt: skip
    print(f"{'account':<14}{'calls':>7}{'failed':>8}{'balance':>10}{'expected':>10}  header")
    for account_id, secret in keys.items():
        response = await _balance(http, secret)
        body = response.json()
        failed = sum(1 for e in loads[account_id] if e["status_code"] >= 400)
        ok = body["balance"] == expected[account_id].balance
        all_equal = all_equal and ok
        remaining = response.headers["x-credits-remaining"]
        print(
            f"{account_id:<14}{len(loads[account_id]):>7}{failed:>8}{body['balance']:>10}"
            f"{expected[account_id].balance:>10}  X-Credits-Remaining: {remaining}"
            f"  {'OK' if ok else 'MISMATCH'}"
        )
    first = next(iter(keys.items()))
    print(f"\nAPI: {api_url}   (OpenAPI UI: {api_url}/docs)")
    print(f"Dashboard: {api_url}/dashboard   (sign in with {first[0]}'s key below)")
    for account_id in keys:
        link = await _dashboard_link(http, admin, account_id)
        if link:
            print(f"  {account_id}: {link}")
    print(f"Try: curl -s -H 'Authorization: Bearer {first[1]}' {api_url}/v1/credits/balance")
    return 0 if all_equal else 1
