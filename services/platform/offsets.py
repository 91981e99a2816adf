"""Kafka consumer positions kept in Postgres, committed in the same transaction as the work.

Kafka's own group offsets are not used to resume: a crash between the Postgres commit and a Kafka
commit would replay or skip a batch. Here position and effect commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from services.platform.postgres import DbConnection

SAVE_OFFSET = """
INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, $4)
ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""

CLAIM_OFFSET = """
WITH created AS (
    INSERT INTO kafka_offsets (consumer, topic, kafka_partition, next_offset)
    VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING
)
SELECT next_offset FROM kafka_offsets
WHERE consumer = $1 AND topic = $2 AND kafka_partition = $3 FOR UPDATE
"""

LOAD_OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets
WHERE consumer = $1 AND topic = ANY($2::text[])
"""


async def save_offset(
    conn: DbConnection, consumer: str, topic: str, partition: int, next_offset: int
) -> None:
    await conn.execute(SAVE_OFFSET, consumer, topic, partition, next_offset)


async def claim_offset(conn: DbConnection, consumer: str, topic: str, partition: int) -> int:
    """Lock the partition's stored offset for this transaction and return it.

    A writer that lost the partition in a rebalance and retries an old batch finds the offset
    moved past its records: it drops them instead of moving the offset back.
    """
    offset = await conn.fetchval(CLAIM_OFFSET, consumer, topic, partition)
    if offset is None:  # created by this statement: invisible to its own SELECT
        offset = await conn.fetchval(CLAIM_OFFSET, consumer, topic, partition)
    assert isinstance(offset, int)
    return offset


async def load_offsets(
    conn: DbConnection | asyncpg.Pool, consumer: str, topics: Sequence[str]
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(LOAD_OFFSETS, consumer, list(topics))
    return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}


class SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume each partition from the offset committed in Postgres."""

    def __init__(self, consumer: AIOKafkaConsumer, pool: asyncpg.Pool, consumer_name: str) -> None:
        self.consumer, self.pool, self.consumer_name = consumer, pool, consumer_name

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None  # nothing buffered: every batch commits before the next fetch

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        topics = sorted({tp.topic for tp in assigned})
        stored = await load_offsets(self.pool, self.consumer_name, topics)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
