"""Kafka clients with the settings correctness needs, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from services.platform.settings import Settings, dead_letter_topic


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried send is written once and in order per partition.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


def new_consumer(bootstrap: str, group_id: str, max_records: int) -> AIOKafkaConsumer:
    # Offsets live in Postgres (auto commit off). The range assignor gives one member partition
    # p of every input topic, so one writer sees all of an account's usage and commands.
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=max_records,
        # A quiet partition's "caught up" is as fresh as its last fetch response, and the merge
        # waits for one newer than the record it takes: the broker's default 500 ms hold of an
        # empty fetch would be added to the freshness of every burst's tail.
        fetch_max_wait_ms=100,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


def all_topics(settings: Settings) -> list[str]:
    inputs = list(settings.input_topics)
    return [
        *inputs,
        *(dead_letter_topic(t) for t in inputs),
        settings.ledger_topic,
        settings.alerts_topic,
    ]


async def delete_topics(settings: Settings, timeout_s: float = 60.0) -> None:
    """Delete the namespace's topics (tests and benchmarks: their namespaces are throwaway)."""
    async with _admin(settings, timeout_s) as (admin, existing):
        doomed = [t for t in all_topics(settings) if t in existing]
        if doomed:
            await admin.delete_topics(doomed)


async def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> None:
    """Create the contract's topics (same partition count everywhere: accounts co-partition)."""
    async with _admin(settings, timeout_s) as (admin, existing):
        missing = [t for t in all_topics(settings) if t not in existing]
        if missing:
            inputs = set(settings.input_topics)
            new_topics = [
                NewTopic(t, settings.topic_partitions, 1, topic_configs=_configs(t in inputs))
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(new_topics)


@contextlib.asynccontextmanager
async def _admin(
    settings: Settings, timeout_s: float
) -> AsyncIterator[tuple[AIOKafkaAdminClient, set[str]]]:
    """An admin client, started within `timeout_s`, and the topics that exist."""
    assert settings.kafka_bootstrap is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await _start_with_deadline(admin, timeout_s)
    try:
        yield admin, set(await admin.list_topics())
    finally:
        await admin.close()


async def _start_with_deadline(admin: AIOKafkaAdminClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await admin.start()
            return
        except KafkaConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _configs(is_input: bool) -> dict[str, str]:
    if not is_input:
        return {}
    # Broker append time, not the producer's clock: the writer merges the two input topics by
    # it, and it is the ledger's `recorded_at`, so a replay of the log decides the same.
    return {"message.timestamp.type": "LogAppendTime"}
