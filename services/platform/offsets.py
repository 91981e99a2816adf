"""Kafka consumer positions kept in Postgres, committed in the same transaction as the work.

Kafka's own group offsets are not used to resume: a crash between the Postgres commit and a Kafka
commit would replay or skip a batch. Here position and effect commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from services.platform import failpoints
from services.platform.postgres import DbConnection

SAVE_OFFSETS = """
INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset)
SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""

CREATE_OFFSETS = """
INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset)
SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS x(t, p)
ORDER BY 2, 3
ON CONFLICT DO NOTHING
"""

LOCK_OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets
WHERE consumer = $1 AND (topic, kafka_partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
ORDER BY topic, kafka_partition FOR UPDATE
"""

LOAD_OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets
WHERE consumer = $1 AND topic = ANY($2::text[])
"""


TopicPartitionKey = tuple[str, int]


async def save_offsets(
    conn: DbConnection, consumer: str, next_offsets: Mapping[TopicPartitionKey, int]
) -> None:
    keys = sorted(next_offsets)
    await conn.execute(
        SAVE_OFFSETS, consumer, [t for t, _ in keys], [p for _, p in keys],
        [next_offsets[k] for k in keys],
    )  # fmt: skip


async def claim_offsets(
    conn: DbConnection, consumer: str, partitions: Iterable[TopicPartitionKey]
) -> dict[TopicPartitionKey, int]:
    """Lock the partitions' stored offsets for this transaction and return them.

    A writer that lost a partition in a rebalance and retries an old batch finds the offset
    moved past its records: it drops them instead of moving the offset back.
    """
    keys = sorted(set(partitions))
    topics, numbers = [t for t, _ in keys], [p for _, p in keys]
    await conn.execute(CREATE_OFFSETS, consumer, topics, numbers)
    rows = await conn.fetch(LOCK_OFFSETS, consumer, topics, numbers)
    assert len(rows) == len(keys), "every claimed partition has an offset row"
    return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}


async def load_offsets(
    conn: DbConnection | asyncpg.Pool, consumer: str, topics: Sequence[str]
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(LOAD_OFFSETS, consumer, list(topics))
    return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}


class SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume each partition from the offset committed in Postgres."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        pool: asyncpg.Pool,
        consumer_name: str,
        on_revoked: Callable[[list[TopicPartition]], None] = lambda _: None,
    ) -> None:
        self.consumer, self.pool, self.consumer_name = consumer, pool, consumer_name
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # What was fetched from them but not applied is dropped: whoever gets them next (us
        # too) seeks to the stored offsets and reads it again.
        failpoints.hit("rebalance.revoked")
        self.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        failpoints.hit("rebalance.assigned")
        topics = sorted({tp.topic for tp in assigned})
        stored = await load_offsets(self.pool, self.consumer_name, topics)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
