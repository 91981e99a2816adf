"""What the Kafka log still holds of what the ledger was built from.

`replay` and `reprice` read the input topics from their beginnings; when retention (or
`delete_records`) removed the start of a partition, or the topic was deleted and re-created,
their answers would silently leave out records the ledger accounts for. `log_gaps` finds those
gaps from two facts the ledger keeps, each a lower bound of what it consumed:

- the writer's stored offsets (`kafka_offsets`, its consumer group): per partition it consumed
  offsets `[0, next_offset)` of the topic, so offsets below the log start offset, or at and above
  the log end offset, are records it applied that the log no longer holds;
- the ids it applied (`processed_requests` for usage, `processed_commands` for commands): each
  came from at least one record, so a topic holding fewer records than that lost some (a topic
  deleted and re-created, whose new offsets the writer resumed from its beginning).

Neither can refuse a whole log: the log holds `[log start, log end)` per partition, every
applied id has a record there, and the end offsets also count transaction markers and
duplicates (so the count only ever over-estimates what the log holds).

Each gap carries, when known, a bound on when its records were appended (log append time, the
ledger's `recorded_at`): the first held record's timestamp. A record cannot have occurred more
than `max_future_skew_s` after it was appended (the writer refuses those), so `reprice` can
still answer a window that starts after every gap's bound plus that skew.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.platform.kafka import new_admin, new_reader
from services.platform.settings import Settings

STORED = "SELECT topic, kafka_partition, next_offset FROM kafka_offsets WHERE consumer = $1"
APPLIED = {  # per input topic kind: how many ids the ledger applied, and since when
    "usage": "SELECT count(*) AS ids, min(recorded_at) AS since FROM processed_requests",
    "commands": "SELECT count(*) AS ids, min(recorded_at) AS since FROM processed_commands",
}
FIRST_RECORD_TIMEOUT_MS = 10_000

Offsets = dict[str, dict[int, int]]  # topic -> partition -> offset


@dataclass(frozen=True)
class Gap:
    """Records the ledger accounts for that the log lacks: offsets `[first, end)` of one
    partition, or (partition None) `missing` records of the topic at unknown offsets."""

    topic: str
    partition: int | None
    first: int | None
    end: int | None
    missing: int
    why: str
    appended_after: datetime | None = None  # the ledger's first record of the topic
    appended_before: datetime | None = None  # None: not known (they may be recent)

    def describe(self) -> str:
        where = (
            f"{self.topic} partition {self.partition} offsets {self.first}..{self.end - 1}"
            if self.partition is not None and self.first is not None and self.end is not None
            else f"{self.topic} (offsets unknown)"
        )
        after = f" from {_iso(self.appended_after)}" if self.appended_after else ""
        before = (
            f" before {_iso(self.appended_before)}"
            if self.appended_before
            else ", up to now"
            if after
            else ""
        )
        times = f"; appended{after}{before}" if after or before else ""
        return f"{where}: {self.missing} records missing ({self.why}){times}"


class LogGapError(RuntimeError):
    """The log no longer holds the whole range the ledger does: the answer would leave it out."""

    def __init__(self, what: str, gaps: Sequence[Gap], detail: str = "") -> None:
        self.gaps = tuple(gaps)
        lines = [f"refused: {what}: the Kafka log no longer holds what the ledger was built from"]
        lines += [f"  missing {gap.describe()}" for gap in self.gaps]
        if detail:
            lines.append(f"  {detail}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class LogRange:
    """One partition's log: `[beginning, end)`, and the first held record's append time."""

    beginning: int
    end: int
    first_appended: datetime | None


async def log_ranges(settings: Settings, topics: Iterable[str]) -> dict[TopicPartition, LogRange]:
    """Every partition of `topics` that exists, with its beginning and end offsets."""
    assert settings.kafka_bootstrap is not None
    admin = new_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        if topic.get("error_code", 0) == 0
        for p in topic["partitions"]
    ]
    if not partitions:
        return {}
    consumer = new_reader(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        ranges: dict[TopicPartition, LogRange] = {}
        for tp in partitions:
            first = None
            if beginnings[tp] < ends[tp]:
                first = await _first_appended(consumer, tp, beginnings[tp])
            ranges[tp] = LogRange(beginnings[tp], ends[tp], first)
        return ranges
    finally:
        await consumer.stop()


async def _first_appended(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
) -> datetime | None:
    consumer.assign([tp])
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=FIRST_RECORD_TIMEOUT_MS, max_records=1)
    records = batch.get(tp, [])
    return datetime.fromtimestamp(records[0].timestamp / 1000, UTC) if records else None


async def log_gaps(
    settings: Settings,
    pool: asyncpg.Pool,
    topics: Sequence[str],
    pinned: Offsets | None = None,
) -> list[Gap]:
    """What the ledger (and, for a pinned replay, its manifest's end offsets) accounts for on
    `topics` that the log no longer holds."""
    # The ledger first, the log second: what a live writer applies in between has its record
    # in the log by then (read the other way round, it would look like a gap).
    stored: Offsets = {}
    applied: dict[str, asyncpg.Record] = {}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        for row in await conn.fetch(STORED, settings.consumer_group):  # the furthest, should
            mine = stored.setdefault(row["topic"], {})  # rows of several incarnations be kept
            mine[row["kafka_partition"]] = max(mine.get(row["kafka_partition"], 0),
                                               row["next_offset"])  # fmt: skip
        for topic in topics:
            kind = "usage" if topic == settings.usage_topic else "commands"
            ids = await conn.fetchrow(APPLIED[kind])
            assert ids is not None
            applied[topic] = ids
    ranges = await log_ranges(settings, topics)
    gaps: list[Gap] = []
    for topic in topics:
        kind = "usage" if topic == settings.usage_topic else "commands"
        since: datetime | None = applied[topic]["since"]
        held = {tp.partition: r for tp, r in ranges.items() if tp.topic == topic}
        needed = dict(stored.get(topic, {}))
        for partition, offset in (pinned or {}).get(topic, {}).items():
            needed[partition] = max(needed.get(partition, 0), offset)
        found = _offset_gaps(topic, held, needed, since)
        if not found:
            found = _count_gap(topic, held, int(applied[topic]["ids"]), kind, since)
        gaps += found
    return gaps


def _offset_gaps(
    topic: str, held: dict[int, LogRange], needed: dict[int, int], since: datetime | None
) -> list[Gap]:
    gaps = []
    for partition, next_offset in sorted(needed.items()):
        log = held.get(partition, LogRange(0, 0, None))
        if partition not in held and next_offset > 0:
            gaps.append(Gap(topic, partition, 0, next_offset, next_offset,
                            "the partition no longer exists", since))  # fmt: skip
            continue
        if log.beginning > 0 and next_offset > 0:
            end = min(log.beginning, next_offset)
            why = f"deleted: the log now starts at offset {log.beginning}"
            gaps.append(Gap(topic, partition, 0, end, end, why, since, log.first_appended))
        if next_offset > log.end:
            first = max(log.end, log.beginning)
            why = (
                f"the ledger consumed up to offset {next_offset - 1} but the log ends at "
                f"{log.end}: the topic was deleted and re-created, or truncated"
            )
            gaps.append(Gap(topic, partition, first, next_offset, next_offset - first, why, since))
    return gaps


def _count_gap(
    topic: str, held: dict[int, LogRange], ids: int, kind: str, since: datetime | None
) -> list[Gap]:
    records = sum(log.end - log.beginning for log in held.values())
    if ids <= records:
        return []
    table = "processed_requests" if kind == "usage" else "processed_commands"
    why = (
        f"the ledger applied {ids} ids ({table}) but the log holds {records} records: the topic "
        "was deleted and re-created, or records were deleted"
    )
    # Appended before the first record each partition still holds (a re-created topic's
    # records all follow the old one's; a deleted prefix precedes what is left): known when
    # every partition that ever held a record still holds one.
    starts = [log.first_appended for log in held.values() if log.end > 0]
    known = [t for t in starts if t is not None]
    before = max(known) if known and len(known) == len(starts) else None
    return [Gap(topic, None, None, None, ids - records, why, since, before)]


def horizon(gaps: Iterable[Gap], max_future_skew_s: float) -> datetime | None:
    """The earliest event time no missing record can have (its append time plus the future
    skew the writer allows), or None when some gap's times are unknown."""
    bounds = [gap.appended_before for gap in gaps]
    if not bounds:
        return datetime.min.replace(tzinfo=UTC)
    if any(b is None for b in bounds):
        return None
    latest = max(b for b in bounds if b is not None)
    return latest + timedelta(seconds=max_future_skew_s)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
