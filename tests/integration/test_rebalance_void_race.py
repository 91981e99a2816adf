"""A poll voided by a rebalance must not skip what it drained (StoredOffsets.getmany, c8271bb).

Two consumers of one group read a multi-partition topic through `StoredOffsets`, applying each
batch in a Postgres transaction with its stored offsets (claim, then save), as the writer does.
Member A reads alone, then B joins while A's poll waits for records. The race forced here:
A's listener seeks its new partitions to their stored offsets, records arrive, and A's poll,
still waiting, drains them from the stored offset on. The poll spanned a revocation, so
`getmany` voids it; before the fix it returned nothing and left A's position past the drained
records, which were then never read again (a CI run charged ~40 calls too few that way).

Without help aiokafka rarely lets the seek come first: a freshly assigned partition has no
position, so A's fetcher asks Kafka for the group's committed offset (one round trip), finds
none (offsets live in Postgres, `auto_offset_reset="none"`), and makes the waiting poll raise
NoOffsetForPartitionError, which returns before any record is drained. The test holds A's
committed-offset lookup until A's listener has sought (an event, not a delay): the seek then
always lands first, the lookup finds a position and skips, and the poll drains from the stored
offset. Everything else is real Kafka and Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.platform.kafka import new_consumer, start_producer, top_up_ms
from services.platform.offsets import StoredOffsets
from services.platform.settings import Settings
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

BEFORE, DURING = 5, 10  # records per partition: read by A alone, then across B's join
MAX_RECORDS = 100  # one poll holds every record of a member's partitions
# A poll waits this long for records: A's must span B's join (up to a heartbeat interval, 3 s,
# before A hears of it) and the records produced after A's seek. A found batch returns at once.
POLL_TIMEOUT_MS = 30_000
DEADLINE_S = 15.0


class Watched(ConsumerRebalanceListener):  # type: ignore[misc]
    """StoredOffsets' listener, telling the test when an assignment has been resolved (sought)."""

    def __init__(self, inner: ConsumerRebalanceListener) -> None:
        self.inner = inner
        self.resolved = asyncio.Event()

    def next_assignment(self) -> asyncio.Event:
        """An event set once the next assignment is sought to its stored offsets."""
        self.resolved = asyncio.Event()
        return self.resolved

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.inner.on_partitions_assigned(assigned)
        self.resolved.set()


@dataclass
class Member:
    """One consumer of the group, with what its raw polls drained and what `getmany` voided."""

    consumer: AIOKafkaConsumer
    stored: StoredOffsets
    listener: Watched
    drained: list[str] = field(default_factory=list)  # every record aiokafka's getmany returned
    voided: list[str] = field(default_factory=list)  # drained by a poll that getmany voided
    loops: list[asyncio.Task[None]] = field(default_factory=list)  # its consume loop, once begun


async def test_a_poll_voided_by_a_rebalance_skips_nothing_it_drained(
    namespace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, partitions = namespace.usage_topic, range(namespace.topic_partitions)
    processed: list[str] = []  # values of the records applied (committed), by either member
    assert namespace.database_url is not None
    async with (
        asyncpg.create_pool(namespace.database_url, min_size=1, max_size=4) as pool,
        contextlib.AsyncExitStack() as stack,
    ):
        producer = await start_producer(namespace)
        stack.push_async_callback(producer.stop)
        first = await stack.enter_async_context(member(namespace, pool, processed, monkeypatch))
        before = await produce(producer, topic, partitions, "before", BEFORE)
        await wait_until(
            covers(processed, before), "A to apply the records produced before B",
            deadline_s=DEADLINE_S, components=first.loops,
        )  # fmt: skip

        sought = first.listener.next_assignment()
        hold_committed_lookup(monkeypatch, first.consumer, until=sought)
        second = await stack.enter_async_context(member(namespace, pool, processed, monkeypatch))
        await asyncio.wait_for(sought.wait(), DEADLINE_S)  # A's poll, begun before B, still waits
        during = await produce(producer, topic, partitions, "during", DURING)
        # Past the deadline the asserts below say what is missing (skipped records never come);
        # a consume loop that died says so itself.
        with contextlib.suppress(AssertionError):
            await wait_until(
                covers(processed, before + during), "every record to be applied",
                deadline_s=DEADLINE_S, components=[*first.loops, *second.loops],
            )  # fmt: skip
        for loop in (*first.loops, *second.loops):
            if loop.done() and not loop.cancelled() and loop.exception() is not None:
                raise AssertionError("a consume loop died") from loop.exception()

    assert set(first.voided) & set(during), (
        "the race was not forced: A voided no poll that drained records produced after its seek"
        f" (A voided {first.voided}; drained {first.drained}, B drained {second.drained})"
    )
    assert Counter(processed) == Counter(before + during), exactly_once_report(
        processed, before + during, first.voided
    )


@contextlib.asynccontextmanager
async def member(
    settings: Settings,
    pool: asyncpg.Pool,
    processed: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Member]:
    """A consumer of the group subscribed through StoredOffsets, consuming once assigned."""
    consumer = new_consumer(settings, settings.consumer_group, MAX_RECORDS)
    stored = StoredOffsets(pool, settings.consumer_group)
    one = Member(consumer, stored, Watched(stored.listener(consumer)))
    consumer.subscribe([settings.usage_topic], listener=one.listener)
    assigned = one.listener.next_assignment()
    await consumer.start()
    try:
        record_drained(monkeypatch, one)
        # Polls begin once assigned: a first poll spanning the first join would race the same
        # way, and only A's poll across B's join is under test.
        await asyncio.wait_for(assigned.wait(), DEADLINE_S)
        loop = asyncio.create_task(consume(settings, pool, one, processed))
        one.loops.append(loop)
        try:
            yield one
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    finally:
        await consumer.stop()


def record_drained(monkeypatch: pytest.MonkeyPatch, one: Member) -> None:
    """Note what each of aiokafka's polls returns (passed on unchanged)."""
    getmany = one.consumer.getmany

    async def noted(
        *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        fetched: dict[TopicPartition, list[ConsumerRecord]] = await getmany(
            *partitions, timeout_ms=timeout_ms, max_records=max_records
        )
        one.drained.extend(value_of(r) for records in fetched.values() for r in records)
        return fetched

    monkeypatch.setattr(one.consumer, "getmany", noted)


def hold_committed_lookup(
    monkeypatch: pytest.MonkeyPatch, consumer: AIOKafkaConsumer, until: asyncio.Event
) -> None:
    """Hold the fetcher's position lookup for freshly assigned partitions until `until` is set.

    Unheld, the lookup usually finds no committed offset in Kafka before the listener has
    sought, and the waiting poll raises NoOffsetForPartitionError instead of draining records.
    Held, the lookup runs after the listener's seek, finds the position set and leaves it."""
    fetcher = consumer._fetcher
    # A private aiokafka method (fetcher.py, aiokafka 0.14): an upgrade that renames it fails here.
    assert hasattr(fetcher, "_update_fetch_positions"), "aiokafka's fetcher changed"
    lookup: Callable[..., Awaitable[bool]] = fetcher._update_fetch_positions

    async def after_the_seek(assignment: Any, node_id: int, tps: list[TopicPartition]) -> bool:
        # Past the deadline the lookup goes on unheld: the test then fails saying so.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), DEADLINE_S)
        return await lookup(assignment, node_id, tps)

    monkeypatch.setattr(fetcher, "_update_fetch_positions", after_the_seek)


async def consume(
    settings: Settings, pool: asyncpg.Pool, one: Member, processed: list[str]
) -> None:
    """Poll through StoredOffsets and apply each partition's records, as the writer does."""
    while True:
        revocations, drained = one.stored.revocations, len(one.drained)
        fetched = await one.stored.getmany(
            one.consumer,
            timeout_ms=POLL_TIMEOUT_MS,
            max_records=MAX_RECORDS,
            top_up_ms=top_up_ms(settings),
        )
        if one.stored.revocations != revocations and not fetched:
            one.voided.extend(one.drained[drained:])
        for tp, records in fetched.items():
            await apply(pool, one.stored, tp, records, processed)


async def apply(
    pool: asyncpg.Pool,
    stored: StoredOffsets,
    tp: TopicPartition,
    records: list[ConsumerRecord],
    processed: list[str],
) -> None:
    """The records at or past the stored offset, and the offset after them, in one transaction:
    what another member applied already (a partition it has taken over) is not applied again."""
    key = (tp.topic, tp.partition)
    async with pool.acquire() as conn, conn.transaction():
        claimed = await stored.claim(conn, [key])
        fresh = [r for r in records if r.offset >= claimed[key]]
        if not fresh:
            return
        await stored.save(conn, {key: fresh[-1].offset + 1})
    processed.extend(value_of(r) for r in fresh)


async def produce(
    producer: AIOKafkaProducer, topic: str, partitions: range, label: str, per_partition: int
) -> list[str]:
    """`per_partition` records to every partition (each member then has some), acknowledged."""
    sent = [(p, f"{label}-{p}-{n}") for p in partitions for n in range(per_partition)]
    acks = [await producer.send(topic, value.encode(), partition=p) for p, value in sent]
    await asyncio.gather(*acks)
    return [value for _, value in sent]


def covers(processed: list[str], expected: list[str]) -> Callable[[], Awaitable[bool]]:
    async def covered() -> bool:
        return set(expected) <= set(processed)

    return covered


def exactly_once_report(processed: list[str], expected: list[str], voided: list[str]) -> str:
    counts = Counter(processed)
    missing = sorted(v for v in expected if counts[v] == 0)
    twice = sorted(v for v, n in counts.items() if n > 1)
    return (
        f"not exactly once: {len(missing)} never applied {missing}, applied twice {twice};"
        f" A's voided poll drained {sorted(voided)}"
    )


def value_of(record: ConsumerRecord) -> str:
    value: bytes = record.value
    return value.decode()
