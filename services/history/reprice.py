"""`creditledger reprice`: what historical usage would have cost under another price book.

Reads `credits.usage.v1` from its earliest offsets up to its end offsets at the start (no
consumer group, nothing committed: live state is untouched) and keeps the calls whose event time
falls in [from, to), with the writer's rules: the first payload of a request id counts, a call
that named its own `credits` keeps them under any book, any other call is priced by endpoint.

The report shows the price-book effect alone. The same calls are priced twice: `charged` under
the book that was in force at each call's `occurred_at` (the stored versions, else the built-in
book: what the writer charged), `repriced` under the other book, and `difference` is
`repriced - charged`. A failed call (4xx/5xx) is refunded in full under either book, so it
counts in `calls` and `failed` but in neither price. What the ledger did with the calls beyond
their price stays as it was and has its own columns: `refunded` (refunds of the successful
calls) and `owed` (what no spendable credit covered when they happened). Per account, endpoint
and UTC day, to a scratch CSV file.

It refuses (`LogGapError`) rather than answer from part of the calls. Before reading, when the
usage topic lacks records the ledger applied (`coverage.py`: a deleted start of a partition, a
topic deleted and re-created) and the window starts before those records' append time plus
`max_future_skew_s` (so one of them may have occurred in it). After reading, when a call the
ledger charged in the window (a consume entry by its occurred_at, captures of holds apart) has
no record in the log: however the records went, the report would leave it out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic import ValidationError

from schemas.price_book import load_schedule
from schemas.usage import UsageEvent
from services.core.pricing import PriceBook, PriceSchedule
from services.history.coverage import LogGapError, horizon, log_gaps
from services.platform.kafka import new_reader
from services.platform.request_entries import REQUEST_ENTRIES
from services.platform.settings import Settings

LOOKUP_BATCH = 5000
FETCH_TIMEOUT_MS = 500
# Per request ($1 accounts, $2 request ids): credits refunded (its refund entries, keyed
# `refund:<id>`) and left owed (its consume entries' `owed`, keyed `request:<id>`), from the
# entries the writer's refund lineage reads (services/platform/request_entries.py).
LEDGER_OUTCOME = f"""
SELECT e.account_id, e.source,
       coalesce(sum(e.delta) FILTER (WHERE e.reason = 'refund'), 0)::bigint AS refunded,
       coalesce(sum((e.metadata ->> 'owed')::bigint) FILTER (WHERE e.reason = 'consume'), 0)::bigint
         AS owed
FROM ({REQUEST_ENTRIES}) e
GROUP BY e.account_id, e.source
"""  # noqa: S608 - constant fragments, no input
# The calls the ledger charged in the window: usage consumes (a capture's carries `hold_id`).
CHARGED_IN_WINDOW = """
SELECT DISTINCT account_id, substr(source, 9) AS request_id, occurred_at, recorded_at
FROM ledger_entries
WHERE reason = 'consume' AND source LIKE 'request:%' AND NOT metadata ? 'hold_id'
  AND occurred_at >= $1 AND occurred_at < $2 AND recorded_at < $3
"""
COLUMNS = ["account_id", "endpoint", "day", "calls", "failed", "charged", "repriced",
           "difference", "refunded", "owed"]  # fmt: skip
RowKey = tuple[str, str, date]  # (account_id, endpoint, UTC day)


@dataclass
class Row:
    calls: int = 0
    failed: int = 0
    charged: int = 0  # the successful calls under the book in force when they happened
    repriced: int = 0  # the same calls under the other book
    refunded: int = 0  # what the ledger refunded of the successful calls
    owed: int = 0  # what the ledger left owed for them

    @property
    def difference(self) -> int:
        return self.repriced - self.charged


def load_price_book(path: Path) -> PriceBook:
    """A book from JSON: the price-book body ({default_credits, prices}; `effective_at`, if
    there, is ignored) or the older {version, credits_by_endpoint, default_credits}."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object is expected")
    prices = data.get("prices", data.get("credits_by_endpoint")) or {}
    if not isinstance(prices, dict):
        raise ValueError(f"{path}: prices must be an object {{endpoint: credits}}")
    book = PriceBook(
        version=str(data.get("version", path.stem)),
        credits_by_endpoint={str(k): _credits(v, str(k)) for k, v in prices.items()},
        default_credits=_credits(data.get("default_credits", 1), "default_credits"),
    )
    return book


def _credits(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: credits are a whole number, 0 or more (got {value!r})")
    return value


def price_under(event: UsageEvent, prices: PriceBook | PriceSchedule) -> int:
    """The call's price under a book, or under the schedule at its occurred_at (the writer's
    rule: its own `credits` first); 0 for a failed call, which is refunded in full."""
    if event.status_code >= 400:
        return 0
    if event.credits is not None:
        return event.credits
    return prices.price(event.endpoint, event.occurred_at.astimezone(UTC))


def repriced_cost(event: UsageEvent, book: PriceBook) -> int:
    return price_under(event, book)


async def reprice(
    settings: Settings,
    pool: asyncpg.Pool,
    book: PriceBook,
    start: datetime,
    end: datetime,
    progress: Callable[[int], None] = lambda calls: None,  # calls re-rated so far, per batch
) -> dict[RowKey, Row]:
    """Raises `LogGapError` when the log lacks calls of the window the ledger accounts for."""
    what = f"reprice {_iso(start)}..{_iso(end)}"
    gaps = await log_gaps(settings, pool, [settings.usage_topic])
    if gaps:
        since = horizon(gaps, settings.max_future_skew_s)
        if since is None or start < since:
            later = f"a window from {_iso(since)} on" if since else "no window"
            raise LogGapError(what, gaps, f"calls in the window may be among them ({later} "
                              "can be answered from what the log holds)")  # fmt: skip
    async with pool.acquire() as conn:
        in_force = await load_schedule(conn)
    rows: dict[RowKey, Row] = {}
    pending: list[UsageEvent] = []
    in_log = LogScan()
    seen = 0
    async for event in _usage_events(settings, start, end, in_log):
        pending.append(event)
        if len(pending) >= LOOKUP_BATCH:
            await _settle(pool, pending, in_force, book, rows)
            seen += len(pending)
            progress(seen)
            pending = []
    await _settle(pool, pending, in_force, book, rows)
    await _refuse_unseen(settings, pool, start, end, in_log, what)
    return rows


async def _refuse_unseen(
    settings: Settings,
    pool: asyncpg.Pool,
    start: datetime,
    end: datetime,
    in_log: LogScan,
    what: str,
) -> None:
    # Only calls appended before the end offsets were read (less the brokers' clock margin):
    # the live writer may since have charged records the scan was not meant to read.
    cutoff = in_log.ends_read_at - timedelta(milliseconds=settings.merge_clock_margin_ms)
    unseen = [
        r
        for r in await pool.fetch(CHARGED_IN_WINDOW, start, end, cutoff)
        if (r["account_id"], r["request_id"]) not in in_log.ids
    ]
    if not unseen:
        return
    occurred = [r["occurred_at"] for r in unseen]
    recorded = [r["recorded_at"] for r in unseen]
    gaps = await log_gaps(settings, pool, [settings.usage_topic])
    raise LogGapError(
        what,
        gaps,
        f"{len(unseen)} calls the ledger charged in the window (occurred "
        f"{_iso(min(occurred))}..{_iso(max(occurred))}, appended {_iso(min(recorded))}.."
        f"{_iso(max(recorded))}) are not in {settings.usage_topic}, e.g. "
        f"{unseen[0]['account_id']}/{unseen[0]['request_id']}",
    )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class LogScan:
    """Every (account, request id) the scan read, in the range or not, and when it read the
    end offsets it stopped at."""

    ids: set[tuple[str, str]] = field(default_factory=set)
    ends_read_at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def _usage_events(
    settings: Settings, start: datetime, end: datetime, scan: LogScan
) -> AsyncIterator[UsageEvent]:
    """First payload of each (account, request id) in log order, within the event-time range."""
    consumer = new_reader(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.usage_topic, p) for p in range(settings.topic_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        scan.ends_read_at = datetime.now(UTC)
        ends = await consumer.end_offsets(partitions)
        seen = scan.ids
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
    pool: asyncpg.Pool,
    events: list[UsageEvent],
    in_force: PriceSchedule,
    book: PriceBook,
    rows: dict[RowKey, Row],
) -> None:
    if not events:
        return
    ok = [e for e in events if e.status_code < 400]
    outcome = {
        (r["account_id"], r["source"]): (r["refunded"], r["owed"])
        for r in await pool.fetch(
            LEDGER_OUTCOME, [e.account_id for e in ok], [e.request_id for e in ok]
        )
    }
    for event in events:
        key = (event.account_id, event.endpoint, event.occurred_at.astimezone(UTC).date())
        row = rows.setdefault(key, Row())
        row.calls += 1
        if event.status_code >= 400:
            row.failed += 1
            continue
        row.charged += price_under(event, in_force)
        row.repriced += price_under(event, book)
        row.owed += outcome.get((event.account_id, f"request:{event.request_id}"), (0, 0))[1]
        row.refunded += outcome.get((event.account_id, f"refund:{event.request_id}"), (0, 0))[0]


def write_report(rows: dict[RowKey, Row], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for (account, endpoint, day), row in sorted(rows.items()):
        writer.writerow([account, endpoint, day.isoformat(), row.calls, row.failed, row.charged,
                         row.repriced, row.difference, row.refunded, row.owed])  # fmt: skip


def totals(rows: Iterable[Row]) -> Row:
    total = Row()
    for row in rows:
        total.calls += row.calls
        total.failed += row.failed
        total.charged += row.charged
        total.repriced += row.repriced
        total.refunded += row.refunded
        total.owed += row.owed
    return total
