"""Expiry scheduler: publishes an `expire` command for each account whose bucket or hold is due.

Expiry is decided in event time by the writer, so a replay of the input log gives the same
ledger; the scheduler only makes sure a due expiry enters the log even when the account is quiet.
Its command id is derived from the account and the due time, so every scheduler in every writer
process publishes the same command for the same expiry and the writer applies it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.platform.postgres import retry_transient
from services.platform.settings import Settings

log = logging.getLogger("creditledger.scheduler")

DUE_ACCOUNTS = """
SELECT account_id, next_due_at FROM writer_accounts
WHERE next_due_at <= $1 ORDER BY next_due_at LIMIT $2
"""
MAX_DUE_PER_SCAN = 10_000


def expire_command(account_id: str, due_at: datetime) -> dict[str, str]:
    due = due_at.astimezone(UTC).isoformat()
    return {
        "type": "expire",
        "command_id": f"expire:{account_id}:{due}",
        "account_id": account_id,
        "occurred_at": due,
    }


async def publish_due_expiries(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, settings: Settings, now: datetime
) -> int:
    rows = await pool.fetch(DUE_ACCOUNTS, now, MAX_DUE_PER_SCAN)
    acks = []
    for row in rows:
        command = expire_command(row["account_id"], row["next_due_at"])
        value = json.dumps(command).encode()
        acks.append(
            await producer.send(settings.commands_topic, value, key=row["account_id"].encode())
        )
    await asyncio.gather(*acks)
    return len(rows)


async def run_scheduler(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, settings: Settings, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        published = await retry_transient(
            lambda: publish_due_expiries(pool, producer, settings, datetime.now(UTC)),
            "expiry scan",
        )
        if published:
            log.info("published %d expire commands", published)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.expiry_scan_interval_s)
