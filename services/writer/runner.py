"""The writer's consume loop: one Postgres transaction per partition batch.

Each batch's entries, idempotency ids, dead letters, outbox rows and the partition's next offset
commit together, so a crash anywhere replays the batch from the stored offset and the replay
finds its ids already processed: exactly-once effect on the ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.core.pricing import DEFAULT_PRICE_BOOK, PriceBook
from services.platform import failpoints, offsets
from services.platform.kafka import new_consumer
from services.platform.postgres import TRANSIENT_ERRORS
from services.platform.settings import Settings
from services.writer import store
from services.writer.decoding import Decoded, decode_command, decode_usage
from services.writer.outbox import relay_outbox
from services.writer.plan import InputRecord, lineage_keys, plan_batch, seen_keys

log = logging.getLogger("creditledger.writer")

RETRY_BACKOFF_MAX_S = 5.0


class LedgerWriter:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        price_book: PriceBook = DEFAULT_PRICE_BOOK,
    ) -> None:
        self.settings, self.pool, self.producer, self.price_book = (
            settings,
            pool,
            producer,
            price_book,
        )
        self.consumer_name = settings.consumer_group
        self.events_applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        assert self.settings.kafka_bootstrap is not None
        consumer = new_consumer(
            self.settings.kafka_bootstrap,
            self.settings.consumer_group,
            self.settings.batch_max_records,
        )
        consumer.subscribe(
            list(self.settings.input_topics),
            listener=offsets.SeekToStoredOffsets(consumer, self.pool, self.consumer_name),
        )
        await consumer.start()
        try:
            await relay_outbox(self.pool, self.producer, self.settings.outbox_batch_max_rows)
            while not stop.is_set():
                await self._poll_once(consumer)
        finally:
            await consumer.stop()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(
            timeout_ms=self.settings.fetch_timeout_ms, max_records=self.settings.batch_max_records
        )
        for tp, records in batches.items():
            await self._apply_with_retry(consumer, tp, records)
        if batches:
            await relay_outbox(self.pool, self.producer, self.settings.outbox_batch_max_rows)

    async def _apply_with_retry(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> None:
        # Transient failures (Postgres restarting, a deadlock, a serialization failure) retry the
        # same batch: nothing of it committed, so trying again is safe. Backoff is bounded.
        backoff_s = 0.1
        while True:
            try:
                await self.apply_batch(tp.topic, tp.partition, records)
                return
            except TRANSIENT_ERRORS as error:
                log.warning("batch %s[%d] failed (%s); retrying", tp.topic, tp.partition, error)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_MAX_S)

    async def apply_batch(
        self, topic: str, partition: int, records: Sequence[ConsumerRecord]
    ) -> None:
        processed_at = datetime.now(UTC)  # for operators (dead letters, ids); not in entries
        async with self.pool.acquire() as conn, conn.transaction():
            stored_offset = await offsets.claim_offset(conn, self.consumer_name, topic, partition)
            inputs = [self._to_input(topic, r) for r in records if r.offset >= stored_offset]
            if not inputs:
                return
            decoded = [i.decoded for i in inputs if isinstance(i.decoded, Decoded)]
            states = await store.lock_accounts(
                conn,
                (d.account_id for d in decoded),
                (key for d in decoded for key in lineage_keys(d)),
            )
            seen = await store.load_seen(conn, (key for d in decoded for key in seen_keys(d)))
            plan = plan_batch(inputs, states, seen)
            failpoints.hit("writer.before_write")
            await store.write_plan(
                conn, plan, self.settings.ledger_topic, self.settings.alerts_topic, processed_at
            )
            next_offset = records[-1].offset + 1
            await offsets.save_offset(conn, self.consumer_name, topic, partition, next_offset)
            failpoints.hit("writer.before_commit")
        failpoints.hit("writer.after_commit")
        self.events_applied += len(plan.processed)

    def _to_input(self, topic: str, record: ConsumerRecord) -> InputRecord:
        key: bytes | None = record.key
        value: bytes | None = record.value
        if topic == self.settings.usage_topic:
            decoded = decode_usage(key, value, self.price_book)
        else:
            decoded = decode_command(key, value)
        return InputRecord(
            topic=topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=value,
            headers=tuple((name, bytes(v)) for name, v in record.headers),
            log_time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            decoded=decoded,
        )
