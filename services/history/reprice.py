"""`creditledger reprice`: what historical usage would have cost under another price book.

Reads `credits.usage.v1` from its earliest offsets up to its end offsets at the start (no
consumer group, nothing committed: live state is untouched), keeps the calls whose event time
falls in [from, to), applies the writer's rules (the first payload of a request id counts; a
call that answered 4xx/5xx costs nothing; a call that named its own `credits` keeps them; any
other call is priced by endpoint), and sets that against what the ledger charged each request
(its consume entries net of refunds). The result, per account, endpoint and UTC day, goes to a
scratch CSV file: `calls`, `charged`, `repriced`, `difference` (repriced - charged).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from schemas.usage import UsageEvent
from services.core.pricing import PriceBook
from services.platform.settings import Settings

LOOKUP_BATCH = 5000
FETCH_TIMEOUT_MS = 500
CHARGED = """
SELECT e.account_id, e.source, -sum(e.delta)::bigint AS net
FROM ledger_entries e
JOIN unnest($1::text[], $2::text[]) AS k(account_id, source)
  ON e.account_id = k.account_id AND e.source = k.source
GROUP BY e.account_id, e.source
"""
RowKey = tuple[str, str, date]  # (account_id, endpoint, UTC day)


@dataclass
class Row:
    calls: int = 0
    charged: int = 0
    repriced: int = 0

    @property
    def difference(self) -> int:
        return self.repriced - self.charged


def load_price_book(path: Path) -> PriceBook:
    data = json.loads(path.read_text())
    book = PriceBook(
        version=str(data["version"]),
        credits_by_endpoint={
            str(k): int(v) for k, v in data.get("credits_by_endpoint", {}).items()
        },
        default_credits=int(data.get("default_credits", 1)),
    )
    assert all(v >= 0 for v in book.credits_by_endpoint.values()) and book.default_credits >= 0
    return book


def repriced_cost(event: UsageEvent, book: PriceBook) -> int:
    if event.status_code >= 400:
        return 0  # refunded by the ledger, under any book
    return event.credits if event.credits is not None else book.price(event.endpoint)


async def reprice(
    settings: Settings, pool: asyncpg.Pool, book: PriceBook, start: datetime, end: datetime
) -> dict[RowKey, Row]:
    rows: dict[RowKey, Row] = {}
    pending: list[UsageEvent] = []
    async for event in _usage_events(settings, start, end):
        pending.append(event)
        if len(pending) >= LOOKUP_BATCH:
            await _settle(pool, pending, book, rows)
            pending = []
    await _settle(pool, pending, book, rows)
    return rows


async def _usage_events(
    settings: Settings, start: datetime, end: datetime
) -> AsyncIterator[UsageEvent]:
    """First payload of each (account, request id) in log order, within the event-time range."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.usage_topic, p) for p in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        seen: set[tuple[str, str]] = set()
        while await _behind(consumer, ends):
            for records in (await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)).values():
                for record in records:
                    event = _decode(record.value)
                    if event is None or (event.account_id, event.request_id) in seen:
                        continue
                    seen.add((event.account_id, event.request_id))
                    if start <= event.occurred_at < end:
                        yield event
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        position: int = await consumer.position(tp)
        if position < end:
            return True
    return False


def _decode(value: bytes | None) -> UsageEvent | None:
    try:
        return UsageEvent.model_validate_json(value or b"")
    except ValidationError:
        return None  # a dead letter: the ledger charged nothing for it


async def _settle(
    pool: asyncpg.Pool, events: list[UsageEvent], book: PriceBook, rows: dict[RowKey, Row]
) -> None:
    if not events:
        return
    charged = {
        (r["account_id"], r["source"]): r["net"]
        for r in await pool.fetch(
            CHARGED,
            [e.account_id for e in events for _ in range(2)],
            [s for e in events for s in (f"request:{e.request_id}", f"refund:{e.request_id}")],
        )
    }
    for event in events:
        key = (event.account_id, event.endpoint, event.occurred_at.astimezone(UTC).date())
        row = rows.setdefault(key, Row())
        row.calls += 1
        row.charged += charged.get((event.account_id, f"request:{event.request_id}"), 0)
        row.charged += charged.get((event.account_id, f"refund:{event.request_id}"), 0)
        row.repriced += repriced_cost(event, book)


def write_report(rows: dict[RowKey, Row], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(["account_id", "endpoint", "day", "calls", "charged", "repriced", "difference"])
    for (account, endpoint, day), row in sorted(rows.items()):
        writer.writerow([account, endpoint, day.isoformat(), row.calls, row.charged, row.repriced,
                         row.difference])  # fmt: skip


def totals(rows: Iterable[Row]) -> Row:
    total = Row()
    for row in rows:
        total.calls += row.calls
        total.charged += row.charged
        total.repriced += row.repriced
    return total
