"""Publish committed outbox rows to Kafka, oldest first, then delete them.

One relay at a time (a transaction-scoped advisory lock), in outbox_id order: an account's rows
are inserted under its row lock, so their ids rise with its seq and its ledger messages leave in
seq order. A crash after Kafka acknowledged but before the delete commits republishes those
rows: output topics are at-least-once, and readers drop what they have (by seq or entry id).
"""

from __future__ import annotations

import asyncio
import base64

import asyncpg
from aiokafka import AIOKafkaProducer

from services.platform import failpoints

_RELAY_LOCK_KEY = 7_320_451_167

FETCH_OUTBOX = """
SELECT account_id, outbox_id, topic, key, value, headers FROM outbox
ORDER BY outbox_id LIMIT $1
"""
DELETE_OUTBOX = """
DELETE FROM outbox o USING unnest($1::text[], $2::bigint[]) AS d(account_id, outbox_id)
WHERE o.account_id = d.account_id AND o.outbox_id = d.outbox_id
"""


async def relay_outbox(pool: asyncpg.Pool, producer: AIOKafkaProducer, max_rows: int) -> int:
    """Publish until the outbox is empty or another relay holds the lock; return rows sent."""
    sent_total = 0
    while True:
        sent = await _relay_once(pool, producer, max_rows)
        sent_total += sent
        if sent < max_rows:
            return sent_total


async def _relay_once(pool: asyncpg.Pool, producer: AIOKafkaProducer, max_rows: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK_KEY):
            return 0
        rows = await conn.fetch(FETCH_OUTBOX, max_rows)
        if not rows:
            return 0
        acks = []
        for row in rows:
            headers = [(name, base64.b64decode(value)) for name, value in row["headers"]]
            acks.append(
                await producer.send(row["topic"], row["value"], key=row["key"], headers=headers)
            )
        await asyncio.gather(*acks)
        failpoints.hit("outbox.after_publish")
        await conn.execute(
            DELETE_OUTBOX, [r["account_id"] for r in rows], [r["outbox_id"] for r in rows]
        )
        return len(rows)
