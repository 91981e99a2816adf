"""The bench's messages, a fast producer, and the wait until ledger and projections caught up."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable

import asyncpg
from aiokafka import AIOKafkaProducer

from projections.lag import projection_lag
from services.platform.kafka import new_producer
from services.platform.settings import Settings

OCCURRED_AT = "2026-11-21T10:00:00+00:00"
ENDPOINT = "POST /v1/scanner/scan"
SEND_WINDOW = 20_000  # sends in flight before we wait for their acks: bounds memory
POLL_S = 0.1
FAILING_RATE_PER_S = 500  # a wait that would need a rate this low has failed: its deadline


def deadline_s(records: int) -> float:
    """How long a wait for `records` to be applied may take: two minutes at least."""
    return max(120.0, records / FAILING_RATE_PER_S)


def account_id(n: int) -> str:
    return f"acct_{n:06d}"


def grant_message(account: str, amount: int) -> tuple[bytes, bytes]:
    body = {
        "type": "grant", "command_id": f"bench-grant-{account}", "account_id": account,
        "occurred_at": OCCURRED_AT, "amount": amount, "bucket": "purchased",
        "name": "bench", "source": "bench",
    }  # fmt: skip
    return account.encode(), json.dumps(body).encode()


def usage_message(account: str, request_id: str) -> tuple[bytes, bytes]:
    body = {
        "request_id": request_id, "account_id": account, "key_id": "key_bench",
        "endpoint": ENDPOINT, "status_code": 200, "occurred_at": OCCURRED_AT,
        "credits": 1, "latency_ms": 10,
    }  # fmt: skip
    return account.encode(), json.dumps(body).encode()


def fast_producer(settings: Settings) -> AIOKafkaProducer:
    """Tuned for throughput: bigger batches, a little linger, still idempotent with acks=all."""
    return new_producer(
        settings, linger_ms=20, max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024
    )


async def produce(
    producer: AIOKafkaProducer, topic: str, messages: Iterable[tuple[bytes, bytes]]
) -> int:
    """Sends every message, waiting for acks every SEND_WINDOW sends; returns how many."""
    sent = 0
    pending: list[asyncio.Future[object]] = []
    for key, value in messages:
        pending.append(await producer.send(topic, value, key=key))
        sent += 1
        if len(pending) >= SEND_WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent


class Tally:
    """What we published, per account: the expected ledger."""

    def __init__(self) -> None:
        self.granted: Counter[str] = Counter()
        self.used: Counter[str] = Counter()
        self.records = 0  # input records in all (both topics)

    def expected_balances(self) -> dict[str, int]:
        return {a: self.granted[a] - self.used[a] for a in self.granted | self.used}


async def consumed_records(pool: asyncpg.Pool, settings: Settings) -> int:
    total = await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets WHERE consumer = $1",
        settings.consumer_group,
    )
    return int(total)


# Each account's checkpoint is at most its writer seq, so the two sums are equal exactly when no
# account trails. Two scans without a join: polled every POLL_S through a catch-up's tail, the
# lag's join (1 s a call over 100,000 accounts) took Postgres's time from the projector it waits on.
ENTRIES_UNPROJECTED = """
SELECT (SELECT coalesce(sum(seq), 0) FROM writer_accounts)
     - (SELECT coalesce(sum(last_seq), 0) FROM balance_view)
"""


async def caught_up(pool: asyncpg.Pool, settings: Settings, records: int) -> bool:
    """The writer stored offsets past every record, the outbox is empty, no projection lags
    (the cheap sums first, then the lag itself, once, to confirm)."""
    if await consumed_records(pool, settings) < records:
        return False
    if int(await pool.fetchval("SELECT count(*) FROM outbox")) > 0:
        return False
    if int(await pool.fetchval(ENTRIES_UNPROJECTED)) > 0:
        return False
    return all(lag.accounts_behind == 0 for lag in await projection_lag(pool))


async def wait_caught_up(
    pool: asyncpg.Pool,
    settings: Settings,
    records: int,
    deadline_s: float,
    check_alive: Callable[[], None] = lambda: None,
) -> float:
    """Waits until `caught_up` (`check_alive` raises when a component died); returns the
    monotonic time it was first seen."""
    deadline = time.monotonic() + deadline_s
    while not await caught_up(pool, settings, records):
        check_alive()
        if time.monotonic() > deadline:
            seen = await consumed_records(pool, settings)
            raise TimeoutError(
                f"not caught up after {deadline_s:.0f} s: writer at {seen} of {records} records"
            )
        await asyncio.sleep(POLL_S)
    return time.monotonic()


async def ledger_exact(pool: asyncpg.Pool, expected: dict[str, int]) -> bool:
    """Ledger sums, writer snapshots and balance view all equal grants − events, per account."""
    rows = await pool.fetch(
        """SELECT e.account_id, sum(e.delta) AS ledger, w.balance AS writer, b.balance AS view
           FROM ledger_entries e JOIN writer_accounts w USING (account_id)
           LEFT JOIN balance_view b USING (account_id)
           GROUP BY e.account_id, w.balance, b.balance"""
    )
    found = {r["account_id"]: (r["ledger"], r["writer"], r["view"]) for r in rows}
    return found.keys() == expected.keys() and all(
        found[a] == (v, v, v) for a, v in expected.items()
    )
