"""The projector: reads `credits.ledger.v1` and updates the read models it owns (balance,
activity, grants; `endpoint_usage` is the writer's, written in its batch transaction).

Per partition batch, one transaction holds every model's update and the partition's offset, and
one checkpoint per account serves every model (its `balance_view` row: projections/checkpoints.py),
so a redelivered entry (the outbox is at-least-once) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from projections import checkpoints
from projections.activity import projection as activity_projection
from projections.balance import projection as balance_projection
from projections.grants import projection as grants_projection
from schemas.ledger import LedgerEntryMessage
from schemas.ledger_decode import decode_entry_message
from services.platform import failpoints, offsets
from services.platform.concurrency import all_or_none
from services.platform.kafka import new_consumer, top_up_ms
from services.platform.postgres import DbConnection, retry_transient
from services.platform.settings import Settings

log = logging.getLogger("creditledger.projector")

ApplyModel = Callable[[DbConnection, checkpoints.Locked], Awaitable[None]]
# Balance first: it folds the views that `checkpoints.save` writes.
PROJECTIONS: dict[str, ApplyModel] = {
    balance_projection.NAME: balance_projection.apply_batch,
    activity_projection.NAME: activity_projection.apply_batch,
    grants_projection.NAME: grants_projection.apply_batch,
}


async def apply_entries(conn: DbConnection, entries: Sequence[LedgerEntryMessage]) -> None:
    """Every model's update for a batch, in the caller's transaction: the accounts' checkpoints
    locked once, each model folding the entries above them, the checkpoints saved once."""
    locked = await checkpoints.lock(conn, entries)
    if not locked.fresh:
        return
    for apply_model in PROJECTIONS.values():
        await apply_model(conn, locked)
    await checkpoints.save(conn, locked)


class Projector:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings, self.pool = settings, pool
        self.consumer_name = settings.projector_group
        self.entries_applied = 0
        # Where each partition resumes, in the topic incarnation being read (offsets.py).
        self.stored = offsets.StoredOffsets(pool, self.consumer_name)

    async def run(self, stop: asyncio.Event) -> None:
        assert self.settings.kafka_bootstrap is not None
        consumer = new_consumer(
            self.settings,
            self.settings.projector_group,
            self.settings.batch_max_records,
        )
        consumer.subscribe([self.settings.ledger_topic], listener=self.stored.listener(consumer))
        await consumer.start()
        try:
            while not stop.is_set():
                await self._poll_once(consumer)
        finally:
            await consumer.stop()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        batches = await self.stored.getmany(
            consumer,
            timeout_ms=self.settings.fetch_timeout_ms,
            max_records=self.settings.batch_max_records,
            top_up_ms=top_up_ms(self.settings),
        )
        # Partitions hold disjoint accounts: their batches commit concurrently, each on its own
        # connection, so one batch's Python work overlaps another's Postgres work.
        tps = list(batches)
        rewinds = await all_or_none(
            retry_transient(
                partial(self.apply_batch, tp.topic, tp.partition, batches[tp]),
                f"projector batch of {tp.topic}[{tp.partition}]",
            )
            for tp in tps
        )
        for tp, rewind_to in zip(tps, rewinds, strict=True):
            if rewind_to is not None:
                # A rebuild moved the stored offset back (projections/rebuild.py): read again.
                log.info("%s[%d] rewound to %d by a rebuild", tp.topic, tp.partition, rewind_to)
                consumer.seek(tp, rewind_to)

    async def apply_batch(
        self, topic: str, partition: int, records: Sequence[ConsumerRecord]
    ) -> int | None:
        """Apply the batch; return an offset to seek back to when the stored one is behind it."""
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await self.stored.claim(conn, [(topic, partition)])
            if stored[(topic, partition)] < records[0].offset:
                return stored[(topic, partition)]
            entries = [
                decode_entry_message(r.value)
                for r in records
                if r.offset >= stored[(topic, partition)]
            ]
            if not entries:
                return None
            await apply_entries(conn, entries)
            failpoints.hit("projector.before_commit")
            next_offset = records[-1].offset + 1
            await self.stored.save(conn, {(topic, partition): next_offset})
        failpoints.hit("projector.after_commit")
        gaps = offsets.skipped_offsets(
            stored[(topic, partition)],
            (r.offset for r in records if r.offset >= stored[(topic, partition)]),
        )
        offsets.count_skipped(self.stored.consumer_name, topic, partition, gaps)
        self.entries_applied += len(entries)
        return None
