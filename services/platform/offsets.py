"""Kafka consumer positions kept in Postgres, committed in the same transaction as the work.

Kafka's own group offsets are not used to resume: a crash between the Postgres commit and a Kafka
commit would replay or skip a batch. Here position and effect commit or roll back together.

Offsets belong to a topic incarnation (issue 13). A topic deleted and re-created under the same
name is a new log, numbered from 0 again: an offset stored for the old log, applied to the new
one, used to skip its first records silently. Each stored offset names the topic id (KIP-516) it
counts in, and `StoredOffsets` resumes a partition (`resume_point`) as follows:
- no stored offset: at the log's beginning;
- stored for another topic id: a new incarnation, resumed at its beginning (the writer's request
  and command ids make re-reading safe), with a warning and
  `creditledger_topic_incarnations_total{consumer,topic}`;
- stored beyond the log end (a log truncated, a database restored from later than the log): at
  the log end, with a warning and `creditledger_offsets_beyond_log_end_total`;
- stored below the log start (retention deleted records before they were read): at the log
  start, with a warning naming how many were lost and `creditledger_offsets_below_log_start_total`;
- stored without a topic id (before migration 0010): the current id is adopted.
It decides on assignment, when a fetch finds the position out of range, and whenever a poll
returns records: the broker's current topic ids are read after the fetch and before anything is
applied, so records of a new incarnation are never applied against the old one's offsets (the
broker numbers topics by name in aiokafka's fetches, Fetch < v13, so a fetch response itself does
not say which incarnation it read). A batch claims its offsets only in the incarnation the
consumer is reading; a row another consumer moved to a newer incarnation makes the claim stale
(nothing of the batch is applied) and the partition is resolved again against the broker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import Counter

from services.platform import failpoints
from services.platform.metrics import REGISTRY
from services.platform.postgres import DbConnection
from services.platform.topic_metadata import describe_topics

log = logging.getLogger("creditledger.offsets")

SAVE_OFFSETS = """
INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset, topic_id)
SELECT $1, t, p, o, i FROM unnest($2::text[], $3::int[], $4::bigint[], $5::uuid[]) AS x(t, p, o, i)
ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,
    topic_id = coalesce(EXCLUDED.topic_id, kafka_offsets.topic_id)
"""

CREATE_OFFSETS = """
INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset, topic_id)
SELECT $1, t, p, 0, i FROM unnest($2::text[], $3::int[], $4::uuid[]) AS x(t, p, i)
ORDER BY 2, 3
ON CONFLICT DO NOTHING
"""

LOCK_OFFSETS = """
SELECT topic, kafka_partition, next_offset, topic_id FROM kafka_offsets
WHERE consumer = $1 AND (topic, kafka_partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
ORDER BY topic, kafka_partition FOR UPDATE
"""

LOAD_OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets
WHERE consumer = $1 AND topic = ANY($2::text[])
"""

MOVE_OFFSET = """
UPDATE kafka_offsets SET next_offset = $4, topic_id = $5
WHERE consumer = $1 AND topic = $2 AND kafka_partition = $3
"""

# A claim that found a row of another incarnation: no record of the batch is at or above it.
STALE = 2**63 - 1
# Resolving asks the broker (metadata, log start and end) and Postgres; bounded, then retried.
RESOLVE_TIMEOUT_S = 10.0

INCARNATIONS = Counter(
    "creditledger_topic_incarnations",
    "New incarnations of a consumed topic (deleted and re-created: another topic id than the"
    " stored offsets'), each resumed from its beginning",
    ("consumer", "topic"),
    registry=REGISTRY,
)
BEYOND_END = Counter(
    "creditledger_offsets_beyond_log_end",
    "Partitions whose stored offset was beyond the log end, resumed at the log end",
    ("consumer", "topic"),
    registry=REGISTRY,
)
BELOW_START = Counter(
    "creditledger_offsets_below_log_start",
    "Partitions whose stored offset was below the log start (records deleted before they were"
    " read), resumed at the log start",
    ("consumer", "topic"),
    registry=REGISTRY,
)
SKIPPED = Counter(
    "creditledger_offsets_skipped_records",
    "Offsets a consumer's committed batch passed over without their records (from its stored"
    " next offset to its first record, or between two records): gaps of the log's own (a"
    " transactional producer's commit markers and aborted records, compaction), which the"
    " writer applies only once a re-read found them again; our producers make none",
    ("consumer", "topic"),
    registry=REGISTRY,
)

TopicPartitionKey = tuple[str, int]


def skipped_offsets(next_offset: int, offsets: Iterable[int]) -> list[tuple[int, int]]:
    """The ranges [first, end) of offsets at or above `next_offset` (where the consumer stood)
    that `offsets` (a batch's records of one partition, in offset order) pass over.

    An offset at or below one already seen is no gap: the projector's batch can hold a record
    twice (a top-up poll after a seek back delivered it again; seen once in CI, test_reprice),
    and its fold skips an entry at or below its checkpoint; the writer's merge drops what it
    buffered when the log comes again (services/writer/merge.py)."""
    gaps: list[tuple[int, int]] = []
    expected = next_offset
    for offset in offsets:
        if offset > expected:
            gaps.append((expected, offset))
        expected = max(expected, offset + 1)
    return gaps


# The start of `count_skipped`'s line, which the chaos rounds look for in their processes' logs.
SKIPPED_LINE = "a committed batch passed over"


def count_skipped(
    consumer_name: str, topic: str, partition: int, gaps: Sequence[tuple[int, int]]
) -> None:
    """Count and log the gaps of a committed batch (`skipped_offsets`): called after its commit,
    so a batch retried counts once."""
    if not gaps:
        return
    skipped = sum(end - first for first, end in gaps)
    SKIPPED.labels(consumer_name, topic).inc(skipped)
    log.warning(
        "%s: %s[%d]: %s %d offsets without their records (%s): they will not be applied",
        consumer_name, topic, partition, SKIPPED_LINE, skipped,
        ", ".join(f"{first}..{end - 1}" for first, end in gaps[:10]),
    )  # fmt: skip


class Stored(NamedTuple):
    next_offset: int
    topic_id: uuid.UUID | None


class Resume(NamedTuple):
    offset: int
    store: bool  # move the stored row to (offset, the current topic id) before reading
    event: str | None  # None, "adopted", "new-incarnation", "beyond-log-end", "below-log-start"


def resume_point(stored: Stored | None, topic_id: uuid.UUID, start: int, end: int) -> Resume:
    """Where a partition resumes, given its stored offset and the log as the broker has it now."""
    if stored is None:
        return Resume(start, False, None)
    event = None
    if stored.topic_id is None:
        event = "adopted"
    elif stored.topic_id != topic_id:
        return Resume(start, True, "new-incarnation")
    if stored.next_offset > end:
        return Resume(end, True, "beyond-log-end")
    if stored.next_offset < start:
        return Resume(start, True, "below-log-start")
    return Resume(stored.next_offset, event is not None, event)


async def save_offsets(
    conn: DbConnection,
    consumer: str,
    next_offsets: Mapping[TopicPartitionKey, int],
    topic_ids: Mapping[TopicPartitionKey, uuid.UUID] | None = None,
) -> None:
    keys = sorted(next_offsets)
    ids = topic_ids or {}
    await conn.execute(
        SAVE_OFFSETS, consumer, [t for t, _ in keys], [p for _, p in keys],
        [next_offsets[k] for k in keys], [ids.get(k) for k in keys],
    )  # fmt: skip


async def claim_offsets(
    conn: DbConnection,
    consumer: str,
    partitions: Iterable[TopicPartitionKey],
    topic_ids: Mapping[TopicPartitionKey, uuid.UUID] | None = None,
) -> dict[TopicPartitionKey, int]:
    """Lock the partitions' stored offsets for this transaction and return them.

    A writer that lost a partition in a rebalance and retries an old batch finds the offset
    moved past its records: it drops them instead of moving the offset back. With `topic_ids`
    (the incarnations the records were read from), a row stored for another incarnation makes
    every offset `STALE`: the batch is applied in no incarnation but its own.
    """
    rows = await _claim(conn, consumer, partitions, topic_ids or {})
    ids = topic_ids or {}
    if any(_other_incarnation(rows[k], ids.get(k)) for k in rows):
        return dict.fromkeys(rows, STALE)
    return {k: row.next_offset for k, row in rows.items()}


async def load_offsets(
    conn: DbConnection | asyncpg.Pool, consumer: str, topics: Sequence[str]
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(LOAD_OFFSETS, consumer, list(topics))
    return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}


async def _claim(
    conn: DbConnection,
    consumer: str,
    partitions: Iterable[TopicPartitionKey],
    topic_ids: Mapping[TopicPartitionKey, uuid.UUID],
) -> dict[TopicPartitionKey, Stored]:
    keys = sorted(set(partitions))
    topics, numbers = [t for t, _ in keys], [p for _, p in keys]
    # One statement once the rows exist, as they do from a partition's first claim on (rows are
    # never deleted). Only a first claim creates rows, then locks them all again; the rows found
    # are locked already, so a created one can be locked out of the (topic, partition) order:
    # a deadlock then needs a third claimer of the same partitions committing a created row in
    # between, and it rolls the batch back whole (nothing applied) to be retried as transient.
    # Alternatives measured: locking nothing on a miss (a guard counting the rows in the same
    # statement) costs a second scan per batch; `INSERT .. ON CONFLICT DO UPDATE .. RETURNING`
    # about the same Postgres time as this, but a new row version per claim (2.3x the WAL of the
    # row lock, 1.6x the WAL of claim and save together) before the save writes another.
    rows = await conn.fetch(LOCK_OFFSETS, consumer, topics, numbers)
    if len(rows) < len(keys):
        ids = [topic_ids.get(k) for k in keys]
        await conn.execute(CREATE_OFFSETS, consumer, topics, numbers, ids)
        rows = await conn.fetch(LOCK_OFFSETS, consumer, topics, numbers)
    assert len(rows) == len(keys), "every claimed partition has an offset row"
    return {
        (r["topic"], r["kafka_partition"]): Stored(r["next_offset"], r["topic_id"]) for r in rows
    }


def _other_incarnation(row: Stored, reading: uuid.UUID | None) -> bool:
    return reading is not None and row.topic_id is not None and row.topic_id != reading


def _key(tp: TopicPartition) -> TopicPartitionKey:
    return (tp.topic, tp.partition)


Fetched = dict[TopicPartition, list[ConsumerRecord]]


class StoredOffsets:
    """A consumer's positions: resumed from Postgres, each in the topic incarnation it counts in.

    `listener(consumer)` seeks on assignment; `getmany` wraps the consumer's and checks each
    poll's records against the broker's topic ids; `claim` and `save` are `claim_offsets` and
    `save_offsets` in the incarnations being read. `on_reset(partitions)` is told of partitions
    whose fetched-but-unapplied records are dropped (revoked, or re-sought): they are read
    again from where they resume.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        consumer_name: str,
        on_reset: Callable[[list[TopicPartition]], None] = lambda _: None,
    ) -> None:
        self.pool, self.consumer_name, self.on_reset = pool, consumer_name, on_reset
        self.reading: dict[TopicPartitionKey, uuid.UUID] = {}
        self.unresolved: set[TopicPartition] = set()  # paused until resolved against the broker
        self.stale: set[TopicPartition] = set()  # a claim found their rows in another incarnation
        self.events: list[tuple[str, TopicPartitionKey, int]] = []  # (event, partition, offset)
        self.revocations = 0  # rebalances that revoked partitions: a poll spanning one is void

    def listener(self, consumer: AIOKafkaConsumer) -> ConsumerRebalanceListener:
        return _Listener(self, consumer)

    async def claim(
        self, conn: DbConnection, partitions: Iterable[TopicPartitionKey]
    ) -> dict[TopicPartitionKey, int]:
        keys = sorted(set(partitions))
        ids = {k: self.reading[k] for k in keys if k in self.reading}
        rows = await _claim(conn, self.consumer_name, keys, ids)
        stale = [k for k in keys if _other_incarnation(rows[k], ids.get(k))]
        if not stale:
            return {k: row.next_offset for k, row in rows.items()}
        for topic, partition in stale:
            log.warning(
                "%s: the stored offset of %s[%d] belongs to topic id %s, not %s (being read):"
                " nothing of this batch is applied; the partition resumes after asking the broker",
                self.consumer_name, topic, partition, rows[(topic, partition)].topic_id,
                ids[(topic, partition)],
            )  # fmt: skip
            self.stale.add(TopicPartition(topic, partition))
        return dict.fromkeys(keys, STALE)

    async def save(self, conn: DbConnection, next_offsets: Mapping[TopicPartitionKey, int]) -> None:
        ids = {k: self.reading[k] for k in next_offsets if k in self.reading}
        await save_offsets(conn, self.consumer_name, next_offsets, ids)

    async def getmany(
        self, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int, top_up_ms: int
    ) -> Fetched:
        """`consumer.getmany`, with no record of an incarnation other than the one being read;
        when it found records, topped up by what arrives within `top_up_ms` (`_top_up`)."""
        if self.stale:  # the batch was not applied: read it again from where it resumes
            stale, self.stale = self.stale, set()
            await self._reset(consumer, stale)
        if self.unresolved:
            await self.resolve(consumer, set(self.unresolved))
        revocations = self.revocations
        fetched = await self._checked(consumer, timeout_ms, max_records, top_up_ms)
        if self.revocations != revocations:
            # A rebalance ran while this poll waited (aiokafka's getmany waits out a rebalance
            # when records arrive during one, and the top-up gives that time): its partitions
            # were revoked, so what it fetched is not ours to apply. The listener sought each
            # partition assigned since to its stored offset, but aiokafka wakes the waiting poll
            # as soon as the new assignment is installed, before that seek is done or after:
            # what the poll then drained from the stored offset on moved the position past it,
            # and voiding it without seeking back would skip those records. So every assigned
            # partition is sought to its stored offset again.
            log.info(
                "%s: a rebalance during the poll: its records are read again", self.consumer_name
            )
            await self._reset(consumer, set(consumer.assignment()))
            return {}
        return fetched

    async def _checked(
        self, consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int, top_up_ms: int
    ) -> Fetched:
        fetched, dropped = await self._poll(consumer, timeout_ms, max_records)
        if dropped:
            return {}
        if fetched:
            fetched = await self._top_up(consumer, fetched, max_records, top_up_ms)
        if not fetched:
            return fetched
        try:
            current = await asyncio.wait_for(
                describe_topics(_client(consumer), sorted({tp.topic for tp in fetched})),
                RESOLVE_TIMEOUT_S,
            )
        except (KafkaError, OSError, TimeoutError) as error:
            log.warning(
                "%s: topic ids unknown (%r): the poll's records are read again", self.consumer_name,
                error,
            )  # fmt: skip
            await self._reset(consumer, set(fetched))
            return {}
        changed = {
            tp
            for tp in fetched
            if tp.topic in current and current[tp.topic].topic_id != self.reading.get(_key(tp))
        }
        if not changed:
            return fetched
        dropped = await self._reset(consumer, changed)
        return {tp: records for tp, records in fetched.items() if tp not in dropped}

    async def _top_up(
        self, consumer: AIOKafkaConsumer, fetched: Fetched, max_records: int, top_up_ms: int
    ) -> Fetched:
        """`fetched` and the records a second poll of up to `top_up_ms` brings, in offset order.

        aiokafka fetches no partition whose records are still buffered, so what a poll returns
        was fetched about when the previous batch began: what arrived while that batch was
        applied comes only in the fetch this poll's drain starts (sent once the one in flight,
        held at most `fetch_max_wait_ms`, is back). Taken now, it joins this batch rather than
        the next: a record waits about one batch less (measured in BENCHMARKS.md)."""
        room = max_records - sum(len(records) for records in fetched.values())
        if top_up_ms <= 0 or room <= 0:
            return fetched
        more, dropped = await self._poll(consumer, top_up_ms, room)
        for tp, records in more.items():
            fetched[tp] = [*fetched.get(tp, ()), *records]
        # The first poll's records stay, but for the partitions a position error re-sought.
        return {tp: records for tp, records in fetched.items() if tp not in dropped}

    async def _poll(
        self, consumer: AIOKafkaConsumer, timeout_ms: int, max_records: int
    ) -> tuple[Fetched, set[TopicPartition]]:
        """`consumer.getmany`, and the partitions a position error made us seek anew (nothing
        fetched of them can be applied: they are read again from where they resume)."""
        try:
            fetched: Fetched = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        except OffsetOutOfRangeError as error:  # auto_offset_reset="none": we decide, not aiokafka
            out_of_range: dict[TopicPartition, int] = error.args[0]
            log.info("%s: fetch offsets out of range: %s", self.consumer_name, out_of_range)
            return {}, await self._reset(consumer, set(out_of_range))
        except NoOffsetForPartitionError as error:  # assigned, but the seek did not happen
            return {}, await self._reset(consumer, {error.args[0]})
        return fetched, set()

    async def read_again(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Drop what was fetched of `partitions` (and their partition number's other topics)
        and read them again from where they resume."""
        await self._reset(consumer, partitions)

    async def _reset(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
    ) -> set[TopicPartition]:
        """Drop what was fetched of `partitions` and of every assigned partition with the same
        number (the writer merges partition p of both inputs), and resume them all anew."""
        numbers = {tp.partition for tp in partitions}
        affected = {tp for tp in consumer.assignment() if tp.partition in numbers}
        self.on_reset(sorted(affected))
        await self.resolve(consumer, affected | partitions)
        return affected | partitions

    async def resolve(
        self, consumer: AIOKafkaConsumer, partitions: Collection[TopicPartition]
    ) -> None:
        """Seek `partitions` to where they resume (`resume_point`); what cannot be decided now
        (Kafka or Postgres not answering, a topic gone) is paused and tried again next poll."""
        assigned = consumer.assignment()
        tps = sorted(tp for tp in partitions if tp in assigned)
        self.unresolved.intersection_update(assigned)
        if not tps:
            return
        try:
            seeks = await asyncio.wait_for(self._decide(consumer, tps), RESOLVE_TIMEOUT_S)
        except (
            KafkaError,
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as e:
            log.warning("%s: cannot resume %s yet (%r): paused", self.consumer_name, tps, e)
            seeks = {}
        # A rebalance may have run while deciding (outside the listener, `getmany` resolves
        # too): a partition no longer assigned is not ours to seek or pause; whoever has it now
        # resumes it from the stored offset.
        now_assigned = consumer.assignment()
        for tp in [tp for tp in seeks if tp not in now_assigned]:
            self.reading.pop(_key(tp), None)
            del seeks[tp]
        undecided = [tp for tp in tps if tp not in seeks and tp in now_assigned]
        for tp, offset in seeks.items():
            consumer.seek(tp, offset)
        if seeks:
            consumer.resume(*seeks)
        if undecided:
            consumer.pause(*undecided)
        self.unresolved.difference_update(seeks)
        self.unresolved.update(undecided)

    async def _decide(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        current = await describe_topics(_client(consumer), sorted({tp.topic for tp in tps}))
        present = [
            tp for tp in tps if tp.topic in current and tp.partition < current[tp.topic].partitions
        ]
        for tp in tps:
            if tp not in present:
                self.reading.pop(_key(tp), None)
                log.warning("%s: %s[%d] is assigned but gone from the broker", self.consumer_name,
                            tp.topic, tp.partition)  # fmt: skip
        if not present:
            return {}
        starts: dict[TopicPartition, int] = await consumer.beginning_offsets(present)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(present)
        decided: list[tuple[TopicPartition, uuid.UUID, Stored | None, Resume]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            keys = [_key(tp) for tp in present]
            rows = {
                (r["topic"], r["kafka_partition"]): Stored(r["next_offset"], r["topic_id"])
                for r in await conn.fetch(
                    LOCK_OFFSETS, self.consumer_name, [t for t, _ in keys], [p for _, p in keys]
                )
            }
            for tp in present:
                topic_id = current[tp.topic].topic_id
                stored = rows.get(_key(tp))
                resume = resume_point(stored, topic_id, starts[tp], ends[tp])
                if resume.store:
                    await conn.execute(
                        MOVE_OFFSET, self.consumer_name, tp.topic, tp.partition, resume.offset,
                        topic_id,
                    )  # fmt: skip
                decided.append((tp, topic_id, stored, resume))
        for tp, topic_id, stored, resume in decided:
            self.reading[_key(tp)] = topic_id
            self._say(tp, topic_id, stored, resume, starts[tp], ends[tp])
        return {tp: resume.offset for tp, _, _, resume in decided}

    def _say(
        self,
        tp: TopicPartition,
        topic_id: uuid.UUID,
        stored: Stored | None,
        resume: Resume,
        start: int,
        end: int,
    ) -> None:
        if resume.event is None or stored is None:
            return
        self.events.append((resume.event, _key(tp), resume.offset))
        where = f"{self.consumer_name}: {tp.topic}[{tp.partition}]"
        if resume.event == "new-incarnation":
            INCARNATIONS.labels(self.consumer_name, tp.topic).inc()
            log.warning(
                "%s is a new incarnation of the topic (topic id %s; the stored offset %d was of"
                " %s): resumed from its beginning, offset %d (its records are applied, what was"
                " applied already is dropped by its ids)",
                where, topic_id, stored.next_offset, stored.topic_id, resume.offset,
            )  # fmt: skip
        elif resume.event == "beyond-log-end":
            BEYOND_END.labels(self.consumer_name, tp.topic).inc()
            log.warning(
                "%s: the stored offset %d is beyond the log end %d (topic id %s): resumed at the"
                " log end", where, stored.next_offset, end, topic_id,
            )  # fmt: skip
        elif resume.event == "below-log-start":
            BELOW_START.labels(self.consumer_name, tp.topic).inc()
            log.warning(
                "%s: the stored offset %d is below the log start %d: %d records were deleted"
                " (retention) before this consumer read them; resumed at the log start",
                where, stored.next_offset, start, start - stored.next_offset,
            )  # fmt: skip
        else:
            log.info("%s: stored offset %d adopted for topic id %s", where, stored.next_offset,
                     topic_id)  # fmt: skip


def _client(consumer: AIOKafkaConsumer) -> Any:
    # The consumer's own client and connections (aiokafka exposes no public handle on it).
    return consumer._client


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stored: StoredOffsets, consumer: AIOKafkaConsumer) -> None:
        self.stored, self.consumer = stored, consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # What was fetched from them but not applied is dropped: whoever gets them next (us
        # too) seeks to the stored offsets and reads it again.
        failpoints.hit("rebalance.revoked")
        self.stored.revocations += 1
        self.stored.on_reset(revoked)
        for tp in revoked:
            self.stored.reading.pop(_key(tp), None)
        self.stored.unresolved.difference_update(revoked)
        self.stored.stale.difference_update(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        failpoints.hit("rebalance.assigned")
        await self.stored.resolve(self.consumer, assigned)
