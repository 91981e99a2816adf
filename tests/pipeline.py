"""Test helpers: run the real components in this process, publish, and wait on conditions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.platform.settings import Settings
from tests.messages import usage

DEFAULT_DEADLINE_S = 60.0
POLL_INTERVAL_S = 0.05


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    deadline_s: float = DEFAULT_DEADLINE_S,
    components: Sequence[asyncio.Task[None]] = (),
) -> None:
    """Poll `condition` until it holds; fail with `what` once the deadline passes, or at once
    with its error when one of the running `components` has died."""
    deadline = time.monotonic() + deadline_s
    while not await condition():
        for task in components:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"a component died while waiting for {what}") from (
                    task.exception()
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def publish(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[dict[str, Any] | tuple[str, bytes]]
) -> None:
    """Publish dicts as JSON keyed by their account_id, or (key, raw bytes) pairs as given."""
    acks = []
    for message in messages:
        if isinstance(message, dict):
            key, value = message["account_id"], json.dumps(message).encode()
        else:
            key, value = message
        acks.append(await producer.send(topic, value, key=key.encode()))
    await asyncio.gather(*acks)


async def view_seq(pool: asyncpg.Pool, account_id: str) -> int:
    seq = await pool.fetchval("SELECT last_seq FROM balance_view WHERE account_id = $1", account_id)
    return int(seq or 0)


async def wait_for_view_seq(pool: asyncpg.Pool, account_id: str, seq: int) -> None:
    async def caught_up() -> bool:
        return await view_seq(pool, account_id) >= seq

    await wait_until(caught_up, f"{account_id}'s balance view to reach seq {seq}")


async def wait_for_consumed(
    pool: asyncpg.Pool,
    settings: Settings,
    messages: int,
    components: Sequence[asyncio.Task[None]] = (),
) -> None:
    """Until the writer's stored offsets cover `messages` input records in all."""

    async def consumed() -> bool:
        total = await pool.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets WHERE consumer = $1",
            settings.consumer_group,
        )
        return int(total) >= messages

    await wait_until(consumed, f"the writer to consume {messages} records", components=components)


async def read_topic(settings: Settings, topic: str, count: int) -> list[ConsumerRecord]:
    """Read `count` records from the start of every partition of `topic` (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + DEFAULT_DEADLINE_S
        while len(records) < count:
            assert time.monotonic() < deadline, f"{topic}: {len(records)} of {count} records"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def usage_with_deleted_start(
    producer: AIOKafkaProducer, settings: Settings, account_id: str, count: int, deleted: int
) -> TopicPartition:
    """`count` usage events of one account (offsets 0..count-1 of its partition), then the first
    `deleted` of them deleted as retention would: the partition."""
    sent = [
        await producer.send_and_wait(
            settings.usage_topic,
            json.dumps(usage(account_id, f"r{n}", credits=1)).encode(),
            key=account_id.encode(),
        )
        for n in range(count)
    ]
    (partition,) = {s.partition for s in sent}
    assert [s.offset for s in sent] == list(range(count))
    tp = TopicPartition(settings.usage_topic, partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        assert await admin.delete_records({tp: RecordsToDelete(deleted)}) == {tp: deleted}
    finally:
        await admin.close()
    return tp


class Driver:
    """Publishes to a running pipeline and waits until everything published has settled."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        components: Sequence[asyncio.Task[None]] = (),
    ) -> None:
        self.settings, self.pool, self.producer = settings, pool, producer
        self.components = components  # a dead one fails the wait at once, with its error
        self.published = 0

    async def usage(self, *events: dict[str, Any] | tuple[str, bytes]) -> None:
        await publish(self.producer, self.settings.usage_topic, events)
        self.published += len(events)

    async def commands(self, *commands: dict[str, Any] | tuple[str, bytes]) -> None:
        await publish(self.producer, self.settings.commands_topic, commands)
        self.published += len(commands)

    async def settled(self) -> None:
        """Writer consumed all we published, outbox drained, every view at its account's seq."""
        await wait_for_consumed(self.pool, self.settings, self.published, self.components)

        async def views_caught_up() -> bool:
            behind = await self.pool.fetchval(
                """SELECT count(*) FROM writer_accounts w
                   LEFT JOIN balance_view b USING (account_id)
                   WHERE w.seq > coalesce(b.last_seq, 0)"""
            )
            pending = await self.pool.fetchval("SELECT count(*) FROM outbox")
            return int(behind) == 0 and int(pending) == 0

        await wait_until(
            views_caught_up, "the projector to catch up with the writer", components=self.components
        )

    async def entries(self, account_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM ledger_entries WHERE account_id = $1 ORDER BY seq", account_id
        )

    async def view(self, account_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM balance_view WHERE account_id = $1", account_id
        )
        assert row is not None, f"no balance view for {account_id}"
        return row

    async def command_status(self, account_id: str, command_id: str) -> tuple[str, str | None]:
        row = await self.pool.fetchrow(
            "SELECT status, reason FROM processed_commands"
            " WHERE account_id = $1 AND command_id = $2",
            account_id,
            command_id,
        )
        assert row is not None, f"command {command_id} was not processed"
        return row["status"], row["reason"]
