"""Packed ledger outbox rows (migration 0018) reach Kafka as the rows of one message each did:
the same keys and values, each on its key's partition, in outbox order; a relay pass stops at
`max_rows` messages (at least one row)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from services.platform.kafka import new_producer
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.writer import outbox
from services.writer.outbox import Relay, pack
from tests.pipeline import read_topic

ROWS: list[list[tuple[bytes, bytes]]] = [
    [(f"acct_{n % 3}".encode(), f'{{"row":0,"n":{n}}}'.encode()) for n in range(5)],
    [(f"acct_{n % 2}".encode(), f'{{"row":1,"n":{n}}}'.encode()) for n in range(3)],
    [(b"acct_9", b'{"row":2,"plain":true}')],  # a row of one message, as before 0018
    [(f"acct_{n}".encode(), f'{{"row":3,"n":{n}}}'.encode()) for n in range(4)],
]


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def producer(namespace: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = new_producer(namespace)
    await producer.start()
    yield producer
    await producer.stop()


async def _fill(pool: asyncpg.Pool, topic: str) -> None:
    for messages in ROWS:
        if len(messages) == 1:
            ((key, value),) = messages
            await pool.execute(
                "INSERT INTO outbox (account_id, topic, key, value) VALUES ($1, $2, $3, $4)",
                key.decode(), topic, key, value,
            )  # fmt: skip
        else:
            await pool.execute(
                "INSERT INTO outbox (account_id, topic, value, packed) VALUES ($1, $2, $3, $4)",
                messages[0][0].decode(), topic, pack(messages), len(messages),
            )  # fmt: skip


async def test_packed_rows_reach_kafka_as_their_messages_in_outbox_order(
    namespace: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    topic = namespace.ledger_topic
    await _fill(pool, topic)
    assert await Relay(pool, producer, max_rows=4).relay() == 13
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    sent = [m for row in ROWS for m in row]
    records = await read_topic(namespace, topic, len(sent))
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    count = namespace.topic_partitions
    for record in records:
        assert record.partition == DefaultPartitioner()(record.key, list(range(count)), [])
    for partition in range(count):
        got = [(r.key, r.value) for r in records if r.partition == partition]
        want = [m for m in sent if DefaultPartitioner()(m[0], list(range(count)), []) == partition]
        assert got == want  # outbox order within each partition


async def test_a_pass_stops_at_max_rows_messages_but_takes_at_least_one_row(
    namespace: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    await _fill(pool, namespace.ledger_topic)
    passes = [await outbox._relay_once(pool, producer, 4, False) for _ in range(4)]
    # 5 (over the bound, alone), 3 + 1 (the next row would pass 4), 4, then nothing left.
    assert passes == [5, 4, 4, 0]


async def test_a_large_packed_row_is_stored_lz4_compressed_and_read_back_whole(
    pool: asyncpg.Pool,
) -> None:
    """Migration 0019: the batch-sized values the relay reads back within milliseconds are
    compressed with lz4, not pglz, and come back byte for byte."""
    messages = [(f"acct_{n}".encode(), b'{"seq":%d,"reason":"consume"}' % n) for n in range(4000)]
    value = pack(messages)
    assert len(value) > 100_000  # far past the 2 kB at which Postgres compresses a value
    outbox_id = await pool.fetchval(
        "INSERT INTO outbox (account_id, topic, value, packed) VALUES ('acct_0', 't', $1, $2)"
        " RETURNING outbox_id",
        value, len(messages),
    )  # fmt: skip
    row = await pool.fetchrow(
        "SELECT pg_column_compression(value) AS method, value FROM outbox WHERE outbox_id = $1",
        outbox_id,
    )
    await pool.execute("DELETE FROM outbox WHERE outbox_id = $1", outbox_id)
    assert row is not None
    assert (row["method"], bytes(row["value"])) == ("lz4", value)
