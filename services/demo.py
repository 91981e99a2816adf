"""`creditledger demo`: a small realistic load through the real pipeline, checked over HTTP.

The load is deterministic (fixed seed, ids and times), so running the demo again republishes the
same events: the ledger treats them as duplicates and the balances do not move.

Its prices are data, like any operator's: `DEMO_PRICES` becomes the price book's first version.
The demo's calls happened in the past (from `BASE_TIME`), and a version set through the API can
only start in the future, so on a fresh installation (an empty book, no call priced yet) the
demo seeds that version through the store at `BASE_TIME`; a replay carries it like any other.
Its own arithmetic then prices each call by the book read back from `GET /v1/admin/price-book`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from schemas.price_book import PriceBookBody, seed_first_version, versions_from_json
from services.core.pricing import PriceSchedule, PriceVersion
from services.platform.kafka import new_producer
from services.platform.postgres import create_pool
from services.platform.settings import Settings

BASE_TIME = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ENDPOINTS = ("POST /v1/scanner/scan", "POST /v1/scanner/deep-scan", "GET /v1/reports")
CATCH_UP_DEADLINE_S = 120.0
DEMO_PRICES = PriceBookBody(
    effective_at=BASE_TIME,
    default_credits=1,
    prices={"POST /v1/scanner/scan": 1, "POST /v1/scanner/deep-scan": 5, "GET /v1/reports": 0},
)
DEMO_SCHEDULE = PriceSchedule(
    (PriceVersion(1, BASE_TIME, DEMO_PRICES.default_credits, DEMO_PRICES.prices),)
)


@dataclass(frozen=True)
class DemoAccount:
    account_id: str
    name: str
    grant_credits: int
    calls: int


DEMO_ACCOUNTS = (
    DemoAccount("demo_acme", "Acme Robotics", 10_000, 180),
    DemoAccount("demo_globex", "Globex Corporation", 5_000, 140),
)


@dataclass
class Expected:
    balance: int = 0
    entries: int = 0


def grant_command(account: DemoAccount) -> dict[str, Any]:
    return {
        "type": "grant", "command_id": f"demo-grant-{account.account_id}",
        "account_id": account.account_id, "occurred_at": BASE_TIME.isoformat(),
        "amount": account.grant_credits, "bucket": "purchased", "name": "Starter pack",
        "source": f"invoice:demo-{account.account_id}",
    }  # fmt: skip


def usage_events(account: DemoAccount, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{account.account_id}")
    events = []
    for n in range(account.calls):
        endpoint = rng.choice(ENDPOINTS)
        status = rng.choices((200, 201, 402, 404, 500, 503), weights=(80, 5, 3, 5, 4, 3))[0]
        event: dict[str, Any] = {
            "request_id": f"demo-{account.account_id}-{n:05d}",
            "account_id": account.account_id, "key_id": "key_demo", "endpoint": endpoint,
            "status_code": status,
            "occurred_at": (BASE_TIME + timedelta(minutes=n * 7)).isoformat(),
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
    book the demo seeds: `DEMO_PRICES` from BASE_TIME)."""
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
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        await _seed_prices(settings)
        prices = await _price_book(http, admin)
        keys = {a.account_id: await _account_key(http, admin, a) for a in DEMO_ACCOUNTS}
        producer = new_producer(settings)
        await producer.start()
        try:
            # Grants first, applied before any usage, so the calls draw from the grant's bucket.
            await _publish(
                producer, settings.commands_topic, [grant_command(a) for a in DEMO_ACCOUNTS]
            )
            await _wait_for_seq(http, keys, {a.account_id: 1 for a in DEMO_ACCOUNTS})
            loads = {a.account_id: usage_events(a) for a in DEMO_ACCOUNTS}
            await _publish(producer, settings.usage_topic, [e for ev in loads.values() for e in ev])
        finally:
            await producer.stop()
        expected = {
            a.account_id: expected_outcome(a, loads[a.account_id], prices) for a in DEMO_ACCOUNTS
        }
        await _wait_for_seq(http, keys, {k: e.entries for k, e in expected.items()})
        return await _report(http, keys, expected, loads, api_url)


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
        print(f"price book: version {seeded.version} from {BASE_TIME.isoformat()} (the demo's)")


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


async def _wait_for_seq(http: httpx.AsyncClient, keys: dict[str, str], seq: dict[str, int]) -> None:
    deadline = time.monotonic() + CATCH_UP_DEADLINE_S
    for account_id, wanted in seq.items():
        while True:
            body = (await _balance(http, keys[account_id])).json()
            if body["ledgerSeq"] >= wanted:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{account_id}: ledger at seq {body['ledgerSeq']}, want {wanted}"
                )
            await asyncio.sleep(0.1)


async def _balance(http: httpx.AsyncClient, secret: str) -> httpx.Response:
    response = await http.get("/v1/credits/balance", headers={"Authorization": f"Bearer {secret}"})
    response.raise_for_status()
    return response


async def _report(
    http: httpx.AsyncClient,
    keys: dict[str, str],
    expected: dict[str, Expected],
    loads: dict[str, list[dict[str, Any]]],
    api_url: str,
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
    print(f"Try: curl -s -H 'Authorization: Bearer {first[1]}' {api_url}/v1/credits/balance")
    return 0 if all_equal else 1
