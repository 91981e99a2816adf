"""The bench's messages, a fast producer, and the wait until ledger and projections caught up."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from projections.lag import projection_lag
from services.platform.kafka import new_admin, new_producer, new_reader
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


async def ledger_end_offsets(settings: Settings) -> int:
    """The ledger topic's end offsets now, summed over its partitions."""
    admin = new_admin(settings)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([settings.ledger_topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(settings.ledger_topic, p["partition"])
                  for p in described["partitions"]]  # fmt: skip
    assert partitions, f"{settings.ledger_topic} has no partitions"
    reader = new_reader(settings)
    await reader.start()
    try:
        return sum((await reader.end_offsets(partitions)).values())
    finally:
        await reader.stop()


async def projected_offsets(pool: asyncpg.Pool, settings: Settings) -> int:
    """Where the projector resumes in the ledger topic, summed: it stores each partition's
    offset in the transaction that applies its entries (projections/runner.py)."""
    total = await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets"
        " WHERE consumer = $1 AND topic = $2",
        settings.projector_group, settings.ledger_topic,
    )  # fmt: skip
    return int(total)


async def _writer_done(pool: asyncpg.Pool, settings: Settings, records: int) -> bool:
    """The writer stored offsets past every record and its relay published the outbox."""
    if await consumed_records(pool, settings) < records:
        return False
    return int(await pool.fetchval("SELECT count(*) FROM outbox")) == 0


async def caught_up(pool: asyncpg.Pool, settings: Settings, records: int) -> bool:
    """The writer stored offsets past every record, the outbox is empty, no projection lags."""
    if not await _writer_done(pool, settings, records):
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
    monotonic time it was first seen.

    Once the writer is done the ledger topic's end no longer moves, so the projector is
    followed by its stored offsets (a few rows); the lag's join over every account (89-110 ms
    a call at 10,000 accounts, polled through the projector's tail it would slow) runs only to
    confirm, when the offsets reach the end."""
    deadline = time.monotonic() + deadline_s
    ledger_end: int | None = None
    while True:
        if await _writer_done(pool, settings, records):
            if ledger_end is None:
                ledger_end = await ledger_end_offsets(settings)
            if await projected_offsets(pool, settings) >= ledger_end:
                if await caught_up(pool, settings, records):
                    return time.monotonic()
                ledger_end = None  # not the end after all (a late message): read it again
        check_alive()
        if time.monotonic() > deadline:
            seen = await consumed_records(pool, settings)
            raise TimeoutError(
                f"not caught up after {deadline_s:.0f} s: writer at {seen} of {records} records"
            )
        await asyncio.sleep(POLL_S)


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
