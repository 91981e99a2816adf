"""The writer's consume loop: one Postgres transaction per partition batch.

A batch is the merged records of partition `p` of both input topics (merge.py). Its entries,
idempotency ids, dead letters, outbox rows and both partitions' next offsets commit together, so
a crash anywhere replays the batch from the stored offsets and the replay finds its ids already
processed: an exactly-once effect on the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from schemas.price_book import load_versions
from services.core.pricing import DEFAULT_PRICE_BOOK, PriceBook, PriceSchedule
from services.platform import failpoints, offsets
from services.platform.concurrency import all_or_none
from services.platform.fetch_clock import FetchClock
from services.platform.kafka import new_consumer, top_up_ms
from services.platform.postgres import retry_transient
from services.platform.settings import Settings
from services.writer import metrics, store
from services.writer.decoding import (
    DeadLetterCode,
    Decoded,
    IdKind,
    Rejected,
    beyond_future_skew,
    decode_command,
    decode_usage,
    printable_text,
)
from services.writer.gaps import READ_AGAIN_LINE, GapGuard, Gaps
from services.writer.merge import PartitionMerge
from services.writer.outbox import Relay
from services.writer.plan import (
    BatchPlan,
    InputRecord,
    lineage_keys,
    misrouted,
    plan_batch,
    seen_keys,
)
from services.writer.state_cache import StateCache

log = logging.getLogger("creditledger.writer")
KAFKA_REQUEST_ID_HEADER = "request_id"  # set by the admin API (services/api/request_id.py)
NO_CONSTRAINT_MS = 2**62
# Decoded account states kept between batches (state_cache.py): about 1-2 KB each, so the
# bound keeps the cache under ~200 MB however many accounts the partitions hold.
STATE_CACHE_MAX_ACCOUNTS = 100_000


class LedgerWriter:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        price_book: PriceBook = DEFAULT_PRICE_BOOK,  # version 0: before any stored version
        *,
        publish: bool = True,
    ) -> None:
        self.settings, self.pool, self.producer = settings, pool, producer
        # A replay into a scratch database writes its outbox rows but publishes nothing.
        self.publish = publish
        self.price_book = price_book
        self.consumer_name = settings.consumer_group
        # Tie-break rank: at the same millisecond a command (a grant, say) goes first.
        self.topics = (settings.commands_topic, settings.usage_topic)
        self.merges: dict[int, PartitionMerge[ConsumerRecord]] = {}
        self.records_applied = 0
        # Partitions per input topic, from the consumer's metadata: where an account belongs.
        self.partition_counts: dict[str, int] = {}
        self.relay = Relay(pool, producer, settings.outbox_batch_max_rows)
        # Where each partition resumes, in the topic incarnation being read (offsets.py).
        self.stored = offsets.StoredOffsets(pool, self.consumer_name, on_reset=self._drop_merges)
        self.state_cache = StateCache(STATE_CACHE_MAX_ACCOUNTS)
        self.fetch_clock = FetchClock()
        # Batches that pass over offsets: applied, or their partition read again (gaps.py).
        self.gaps = GapGuard()
        self.read_again: set[int] = set()  # partitions to seek back after this poll's batches

    async def run(self, stop: asyncio.Event) -> None:
        assert self.settings.kafka_bootstrap is not None
        consumer = new_consumer(
            self.settings,
            self.settings.consumer_group,
            self.settings.batch_max_records,
        )
        consumer.subscribe(list(self.topics), listener=self.stored.listener(consumer))
        await consumer.start()
        self.fetch_clock.install(consumer)
        try:
            await self._relay()  # what a crash left unpublished goes first
            while not stop.is_set():
                await self._poll_once(consumer)
        finally:
            await consumer.stop()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await self.stored.getmany(
            consumer,
            timeout_ms=self.settings.fetch_timeout_ms,
            max_records=self.settings.batch_max_records,
            top_up_ms=top_up_ms(self.settings),
        )
        if fetched:
            failpoints.hit("writer.after_poll")
        self._note_partition_counts(consumer)
        for tp, records in fetched.items():
            self._merge_for(tp.partition).add(tp.topic, records)
        # Partitions hold disjoint accounts and offsets, so their batches commit concurrently,
        # each on its own connection: one batch's Python work overlaps another's Postgres work.
        # Within a partition, batches stay one after another.
        applied = sum(
            await all_or_none(
                self._apply_ready(consumer, partition, merge)
                for partition, merge in list(self.merges.items())
            )
        )
        if self.read_again:
            again, self.read_again = self.read_again, set()
            # read_again takes each partition number's other input topic too
            await self.stored.read_again(
                consumer, {TopicPartition(self.topics[0], p) for p in again}
            )
            self.gaps.read_again(again)
            metrics.GAP_REREADS.inc(len(again))
        if applied or self.relay.due():
            await self._relay()

    async def _apply_ready(
        self, consumer: AIOKafkaConsumer, partition: int, merge: PartitionMerge[ConsumerRecord]
    ) -> int:
        """Apply what the partition's merge can order, batch after batch; return how many."""
        applied = 0
        while merge.buffered():
            margin_ms = self.settings.merge_clock_margin_ms
            horizon = {
                t: await _horizon_ms(consumer, self.fetch_clock, t, partition, margin_ms)
                for t in self.topics
            }
            ready = merge.take_ready(horizon, self.settings.batch_max_records)
            if not ready:
                break
            taken = await retry_transient(
                partial(self.apply_batch, partition, ready),
                f"writer batch of partition {partition}",
            )
            if not taken:  # it passed over records: read again from the stored offsets
                self.read_again.add(partition)
                break
            applied += len(ready)
        return applied

    async def _relay(self) -> None:
        if not self.publish:
            return
        await retry_transient(self.relay.relay, "outbox relay")

    def _drop_merges(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.merges.pop(tp.partition, None)

    def _merge_for(self, partition: int) -> PartitionMerge[ConsumerRecord]:
        if partition not in self.merges:
            self.merges[partition] = PartitionMerge(self.topics)
        return self.merges[partition]

    async def apply_batch(self, partition: int, records: Sequence[ConsumerRecord]) -> bool:
        """Apply records (in merge order) of partition `partition` of the input topics; False
        when nothing was applied because they pass over offsets not seen before (`_gaps`)."""
        processed_at = datetime.now(UTC)  # for operators (dead letters, ids); not in entries
        started = time.perf_counter()
        claimed = {(r.topic, partition) for r in records}
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await self.stored.claim(conn, claimed)
            fresh = [r for r in records if r.offset >= stored[(r.topic, partition)]]
            if not fresh:
                return True
            gaps = self._gaps(partition, stored, fresh)
            if gaps is None:
                return False
            # The price book, once per batch and after its records were fetched: a version
            # committed before a record reached the log is always seen (schemas/price_book.py).
            prices = PriceSchedule(await load_versions(conn), self.price_book)
            inputs = [self._to_input(r, prices) for r in fresh]
            # A misrouted record is forwarded, not applied here: its account is not locked.
            decoded = [
                i.decoded for i in inputs if isinstance(i.decoded, Decoded) and misrouted(i) is None
            ]
            states = await store.lock_accounts(
                conn,
                (d.account_id for d in decoded),
                (key for d in decoded for key in lineage_keys(d)),
                self.state_cache,
            )
            seen = await store.load_seen(conn, (key for d in decoded for key in seen_keys(d)))
            plan = plan_batch(inputs, states, seen)
            failpoints.hit("writer.before_write")
            version = await store.write_plan(
                conn,
                plan,
                self.settings.ledger_topic,
                self.settings.alerts_topic,
                processed_at,
                loaded=states,
            )
            next_offsets = {(r.topic, partition): r.offset + 1 for r in fresh}  # last one wins
            await self.stored.save(conn, next_offsets)
            failpoints.hit("writer.before_commit")
        failpoints.hit("writer.after_commit")
        for topic, topic_gaps in gaps.items():
            offsets.count_skipped(self.stored.consumer_name, topic, partition, topic_gaps)
        if version is not None:  # committed: the rows now hold these states at `version`
            self.state_cache.put_all(plan.states.values(), version)
        self.records_applied += len(fresh)
        _count_committed(plan, fresh, time.perf_counter() - started)
        _log_requested_commands(inputs, plan, self.settings.commands_topic)
        return True

    def _gaps(
        self, partition: int, stored: Mapping[tuple[str, int], int], fresh: Sequence[ConsumerRecord]
    ) -> Gaps | None:
        """The offsets each topic's records pass over, or None: read the partition again."""
        gaps: Gaps = {}
        for topic in {r.topic for r in fresh}:
            topic_offsets = (r.offset for r in fresh if r.topic == topic)
            if found := offsets.skipped_offsets(stored[(topic, partition)], topic_offsets):
                gaps[topic] = found
        if self.gaps.apply(partition, gaps):
            return gaps
        log.warning(
            "partition %d: the batch passes over offsets (%s): %s", partition,
            ", ".join(f"{t}[{g[0][0]}..{g[0][1] - 1}]" for t, g in sorted(gaps.items())),
            READ_AGAIN_LINE,
        )  # fmt: skip
        return None

    def _to_input(self, record: ConsumerRecord, prices: PriceSchedule) -> InputRecord:
        key: bytes | None = record.key
        value: bytes | None = record.value
        decoded: Decoded | Rejected
        try:
            if record.topic == self.settings.usage_topic:
                decoded = decode_usage(key, value, prices)
            else:
                decoded = decode_command(key, value)
        except Exception as error:  # one record must never stop its partition: dead-letter it
            text = printable_text(f"decoding raised {type(error).__name__}: {error}"[:500])
            decoded = Rejected(DeadLetterCode.UNPROCESSABLE, text)
        log_time = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        return InputRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=value,
            headers=tuple((name, bytes(v)) for name, v in record.headers) if record.headers else (),
            log_time=log_time,
            decoded=beyond_future_skew(decoded, log_time, self.settings.max_future_skew_s),
            partition_count=self.partition_counts.get(record.topic),
        )

    def _note_partition_counts(self, consumer: AIOKafkaConsumer) -> None:
        """Each input topic's partition count as the consumer's metadata has it (kept when the
        metadata does not know the topic for a moment)."""
        for topic in self.topics:
            partitions: set[int] | None = consumer.partitions_for_topic(topic)
            if partitions:
                self.partition_counts[topic] = len(partitions)


def _count_committed(plan: BatchPlan, fresh: Sequence[ConsumerRecord], elapsed_s: float) -> None:
    """Counted once committed: a batch retried after a crash counts once."""
    for forward in plan.forwards:
        metrics.MISROUTED.labels(forward.record.topic).inc()
    topics = Counter(r.topic for r in fresh)
    for topic, n in topics.items():
        metrics.RECORDS.labels(topic).inc(n)
    decided = Counter(
        "request" if p.kind is IdKind.REQUEST else "rejected" if p.rejection else "applied"
        for p in plan.processed
    )
    metrics.USAGE_EVENTS.inc(decided.pop("request", 0))
    for status, n in decided.items():
        metrics.COMMANDS.labels(status).inc(n)
    metrics.LEDGER_ENTRIES.inc(len(plan.entries))
    metrics.DUPLICATES.inc(plan.duplicates)
    metrics.BATCH_SECONDS.observe(elapsed_s)


def _log_requested_commands(inputs: Sequence[InputRecord], plan: BatchPlan, topic: str) -> None:
    """One line per committed command that carries an HTTP request id (the admin API's
    `request_id` header): the request's trail from its access log line to its outcome."""
    outcomes: dict[tuple[str, str], str] | None = None
    for record in inputs:
        found = [v for name, v in record.headers if name == KAFKA_REQUEST_ID_HEADER]
        if not found or record.topic != topic:
            continue
        if outcomes is None:
            outcomes = {
                (p.account_id, p.idempotency_id): "rejected" if p.rejection else "applied"
                for p in plan.processed
                if p.kind is IdKind.COMMAND
            }
        decoded = record.decoded
        command_id = decoded.idempotency_id if isinstance(decoded, Decoded) else None
        outcome = (
            outcomes.get((decoded.account_id, decoded.idempotency_id), "duplicate-or-forwarded")
            if isinstance(decoded, Decoded)
            else "dead-lettered"
        )
        log.info(
            "command committed",
            extra={
                "request_id": found[0].decode("latin-1"), "command_id": command_id,
                "outcome": outcome, "topic": record.topic, "partition": record.partition,
                "offset": record.offset,
            },
        )  # fmt: skip


async def _horizon_ms(
    consumer: AIOKafkaConsumer, clock: FetchClock, topic: str, partition: int, margin_ms: int
) -> int | None:
    """A log time before which the partition holds no record we have not seen, or None.

    When a fetch response found us at the partition's end, every record appended before the
    broker built that response was below its high watermark, and so was every record appended
    before its request was sent (`FetchClock`, our clock: not when the response was processed,
    which a busy loop delays). The margin covers the clock skew between broker and writer and a
    record appended but not yet below the high watermark (replication). Without it, a grant
    appended just before a burst of usage on a quiet partition could be merged after that usage.
    """
    tp = TopicPartition(topic, partition)
    if tp not in consumer.assignment():
        return NO_CONSTRAINT_MS  # not ours to merge
    highwater: int | None = consumer.highwater(tp)
    if highwater is None:
        return None  # not fetched yet: its first record could be the earliest
    position: int = await consumer.position(tp)
    if position < highwater:
        return None
    fetched_ms = clock.horizon_ms(consumer, tp)
    return None if fetched_ms is None else fetched_ms - margin_ms
