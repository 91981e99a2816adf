"""Publish committed outbox rows to Kafka, oldest first, then delete them.

One relay at a time (a transaction-scoped advisory lock), in outbox_id order: an account's rows
are inserted under its row lock, so their ids rise with its seq and its ledger messages leave in
seq order. A crash after Kafka acknowledged but before the delete commits republishes those
rows: output topics are at-least-once, and readers drop what they have (by seq or entry id).

Dead letters go in a pass of their own, and a dead-letter topic that refuses them (down,
deleted, misconfigured) is logged and retried on the next relay instead of failing the writer:
their order does not matter, the rows wait in the outbox and `dead_letters`, and ledger
messages, which the projections need, keep flowing.

Forwarded input records (a record found on another partition than its account's, plan.py) are
rows of the input topic, keyed by account id, with the record's value bytes and headers plus
`creditledger.forwarded.from`: like ledger rows, they go to their key's partition as the
producer's default partitioner (murmur2, Java's) computes it, which is the account's partition
the writer forwards to, in outbox order.

Ledger messages are packed (migration 0018): one row holds up to `PACK_MAX_MESSAGES` of one
batch's messages, in entry order, each keyed by its account; the relay sends them in that order,
as if they were rows of their own, so what reaches Kafka is the same records in the same order.
A pass takes rows until it holds `max_rows` messages (at least one row), so a pass's size stays
bounded by messages, not rows.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.platform import failpoints
from services.platform.record_batches import RecordBatches

log = logging.getLogger("creditledger.outbox")
_RELAY_LOCK_KEY = 7_320_451_167
DEAD_LETTER_RETRY_S = 1.0
# Messages per packed row: a few batches' worth of rows per pass, each row well under a MB.
PACK_MAX_MESSAGES = 2_000
_LENGTH = struct.Struct(">I")

# The first rows in outbox order whose messages before them number fewer than $1: at most $1
# rows, and at least the first.
FETCH_OUTBOX = """
SELECT account_id, outbox_id, topic, key, value, headers, packed FROM (
    SELECT *, sum(coalesce(packed, 1)) OVER (ORDER BY outbox_id) - coalesce(packed, 1) AS before
    FROM (
        SELECT account_id, outbox_id, topic, key, value, headers, packed FROM outbox
        WHERE (right(topic, 4) = '.DLT') = $2
        ORDER BY outbox_id LIMIT $1
    ) AS first_rows
) AS counted
WHERE before < $1
ORDER BY outbox_id
"""


def pack(messages: Sequence[tuple[bytes, bytes]]) -> bytes:
    """(key, value) pairs -> one packed row's `value`: each length-prefixed, in order."""
    parts: list[bytes] = []
    for key, value in messages:
        parts += (_LENGTH.pack(len(key)), key, _LENGTH.pack(len(value)), value)
    return b"".join(parts)


def unpack(packed: bytes, count: int) -> Iterator[tuple[bytes, bytes]]:
    """A packed row's `value` -> its `count` (key, value) pairs, in order."""
    view, at = memoryview(packed), 0
    for _ in range(count):
        (key_len,) = _LENGTH.unpack_from(view, at)
        key = bytes(view[at + 4 : at + 4 + key_len])
        at += 4 + key_len
        (value_len,) = _LENGTH.unpack_from(view, at)
        value = bytes(view[at + 4 : at + 4 + value_len])
        at += 4 + value_len
        yield key, value
    assert at == len(packed), "a packed row holds exactly its messages"


DELETE_OUTBOX = """
DELETE FROM outbox o USING unnest($1::text[], $2::bigint[]) AS d(account_id, outbox_id)
WHERE o.account_id = d.account_id AND o.outbox_id = d.outbox_id
"""


@dataclass
class Relay:
    """The outbox relay of one writer; remembers a dead-letter topic that refused its rows."""

    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    max_rows: int
    # While set, dead letters wait in the outbox: `due` tells the idle loop to try again.
    dead_letters_retry_at_s: float | None = None

    def due(self) -> bool:
        retry_at = self.dead_letters_retry_at_s
        return retry_at is not None and time.monotonic() >= retry_at

    async def relay(self) -> int:
        """Publish until the outbox is empty or another relay holds the lock; return rows sent."""
        sent = await _drain(self.pool, self.producer, self.max_rows, dead_letters=False)
        try:
            sent += await _drain(self.pool, self.producer, self.max_rows, dead_letters=True)
        except KafkaError as error:
            log.warning("dead-letter topic refused the outbox's rows; will retry: %r", error)
            self.dead_letters_retry_at_s = time.monotonic() + DEAD_LETTER_RETRY_S
        else:
            self.dead_letters_retry_at_s = None
        return sent


async def _drain(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, max_rows: int, *, dead_letters: bool
) -> int:
    sent_total = 0
    while True:
        sent = await _relay_once(pool, producer, max_rows, dead_letters)
        sent_total += sent
        if sent < max_rows:  # messages: fewer than a full pass, so the outbox is drained
            return sent_total


async def _relay_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, max_rows: int, dead_letters: bool
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK_KEY):
            return 0
        rows = await conn.fetch(FETCH_OUTBOX, max_rows, dead_letters)
        if not rows:
            return 0
        await _publish(producer, rows)
        failpoints.hit("outbox.after_publish")
        await conn.execute(
            DELETE_OUTBOX, [r["account_id"] for r in rows], [r["outbox_id"] for r in rows]
        )
        return sum(r["packed"] or 1 for r in rows)


async def _publish(producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> None:
    """Send the rows in outbox order and wait for every acknowledgement.

    Keyed rows go into one record batch per topic partition at a time, submitted in order, so a
    partition's messages keep the outbox order; building a batch costs a fraction of a `send`
    per message (a future each, a partitioner hash each). A keyless row (a dead letter of an
    unkeyed record) has no order to keep and goes through `send`.
    """
    acks: list[asyncio.Future[Any]] = []
    batches = RecordBatches(producer)
    partitions = _Partitions(producer)
    for topic, key, value, headers in _messages(rows):
        if key is None:
            acks.append(await producer.send(topic, value, headers=headers))
            continue
        await batches.add(topic, await partitions.of(topic, key), key, value, headers)
    acks.extend(await batches.submit_all())
    await asyncio.gather(*acks)


Message = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


def _messages(rows: Sequence[asyncpg.Record]) -> Iterator[Message]:
    """The rows' messages in outbox order, a packed row's in the order it holds them."""
    for row in rows:
        topic, count = row["topic"], row["packed"]
        if count is not None:
            for key, value in unpack(row["value"], count):
                yield topic, key, value, []
            continue
        headers = [(name, base64.b64decode(value)) for name, value in row["headers"]]
        yield topic, row["key"], row["value"], headers


class _Partitions:
    """The producer's own partition for a key (what `send` would pick), remembered per key: the
    same accounts come back in every pass, and the partitioner's hash is pure Python."""

    _known: ClassVar[dict[tuple[str, bytes, int], int]] = {}
    MAX_KNOWN = 200_000

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.counts: dict[str, int] = {}

    async def of(self, topic: str, key: bytes) -> int:
        if topic not in self.counts:  # once per topic and pass: a new partition count shows
            self.counts[topic] = len(await self.producer.partitions_for(topic))
        cache_key = (topic, key, self.counts[topic])
        partition = self._known.get(cache_key)
        if partition is None:
            if len(self._known) >= self.MAX_KNOWN:
                self._known.clear()
            partition = self.producer._partition(topic, None, key, None, key, None)
            self._known[cache_key] = partition
        return partition
