"""Freshness under a steady load (per-event produce → balance visible), and balance reads/s."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from dataclasses import dataclass

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.bench.workload import Tally, account_id, usage_message
from services.platform.settings import Settings

TICK_S = 0.01
POLL_S = 0.005
SAMPLES_PER_S = 100  # events per second whose visibility we time


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Freshness:
    target_per_s: float
    achieved_per_s: float
    samples: int
    unseen: int  # sampled events not visible by the deadline
    p50_ms: float
    p99_ms: float
    max_ms: float


async def freshness(
    producer: AIOKafkaProducer,
    pool: asyncpg.Pool,
    settings: Settings,
    tally: Tally,
    accounts: int,
    rate: float,
    seconds: float,
    settle_deadline_s: float = 60.0,
) -> Freshness:
    """Produces at `rate` for `seconds`; every k-th event's account is polled on balance_view
    until its last_seq reaches the event's seq. Latency = visible − send (poll every 5 ms)."""
    seqs = {
        r["account_id"]: int(r["seq"])
        for r in await pool.fetch("SELECT account_id, seq FROM writer_accounts")
    }
    every = max(1, int(rate // SAMPLES_PER_S))
    outstanding: dict[str, deque[tuple[int, float]]] = {}
    latencies: list[float] = []
    loading = True

    async def poll() -> None:
        deadline = float("inf")
        while loading or outstanding:
            if not loading and deadline == float("inf"):
                deadline = time.monotonic() + settle_deadline_s
            if time.monotonic() > deadline:
                return
            rows = await pool.fetch(
                "SELECT account_id, last_seq FROM balance_view WHERE account_id = ANY($1)",
                list(outstanding),
            )
            now = time.monotonic()
            for row in rows:
                queue = outstanding.get(row["account_id"])
                while queue and queue[0][0] <= row["last_seq"]:
                    latencies.append((now - queue.popleft()[1]) * 1000)
                if queue is not None and not queue:
                    del outstanding[row["account_id"]]
            await asyncio.sleep(POLL_S)

    poller = asyncio.create_task(poll())
    acks: list[asyncio.Future[object]] = []
    sent = 0
    started = time.monotonic()
    end = started + seconds
    try:
        while (now := time.monotonic()) < end:
            due = int(rate * (now - started)) - sent
            for _ in range(max(0, due)):
                account = account_id(sent % accounts)
                key, value = usage_message(account, f"fresh-{sent}")
                acks.append(await producer.send(settings.usage_topic, value, key=key))
                seq = seqs.get(account, 0) + 1
                seqs[account] = seq
                tally.used[account] += 1
                if sent % every == 0:
                    outstanding.setdefault(account, deque()).append((seq, time.monotonic()))
                sent += 1
            await asyncio.sleep(TICK_S)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*acks), settle_deadline_s)
        tally.records += sent
    finally:
        loading = False
        await asyncio.wait_for(poller, settle_deadline_s + 5)
    unseen = sum(len(q) for q in outstanding.values())
    return Freshness(
        target_per_s=rate,
        achieved_per_s=sent / elapsed,
        samples=len(latencies),
        unseen=unseen,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies, default=0.0),
    )


@dataclass(frozen=True)
class Reads:
    requests: int
    errors: int
    per_s: float
    p50_ms: float
    p99_ms: float


async def customer_keys(http: httpx.AsyncClient, settings: Settings, count: int) -> list[str]:
    """Accounts' API keys, made through the admin API."""
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    secrets: list[str] = []
    for n in range(count):
        account = account_id(n)
        created = await http.post(
            "/v1/admin/accounts", json={"account_id": account, "name": account}, headers=admin
        )
        if created.status_code not in (200, 201, 409):
            raise RuntimeError(f"creating {account}: {created.status_code} {created.text}")
        key = await http.post(f"/v1/admin/accounts/{account}/keys", headers=admin)
        if key.status_code != 201:
            raise RuntimeError(f"key for {account}: {key.status_code} {key.text}")
        secrets.append(key.json()["secret"])
    return secrets


async def balance_reads(
    http: httpx.AsyncClient, secrets: list[str], concurrency: int, seconds: float
) -> Reads:
    """`concurrency` clients, each GET /v1/credits/balance in a loop until the time is up."""
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {secrets[n % len(secrets)]}"}
        while time.monotonic() < end:
            started = time.monotonic()
            answer = await http.get("/v1/credits/balance", headers=headers)
            latencies.append((time.monotonic() - started) * 1000)
            if answer.status_code != 200:
                errors += 1

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(concurrency))), seconds + 60)
    elapsed = time.monotonic() - started
    return Reads(
        requests=len(latencies),
        errors=errors,
        per_s=(len(latencies) - errors) / elapsed,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99),
    )
