"""Kafka clients with the settings correctness needs, and topic creation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError

from services.platform.settings import Settings, dead_letter_topic
from services.platform.startup import KAFKA_NOT_READY, wait_until_ready


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried send is written once and in order per partition.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def start_producer(bootstrap: str, wait_s: float = 0.0) -> AIOKafkaProducer:
    """A started `new_producer`, waiting up to `wait_s` for a broker that is not ready yet."""

    async def attempt() -> AIOKafkaProducer:
        producer = new_producer(bootstrap)  # a fresh client per try: a failed start closes it
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    return await wait_until_ready(attempt, "Kafka (producer)", KAFKA_NOT_READY, wait_s)


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
    """An admin client, started within `timeout_s` (with backoff), and the topics that exist."""
    assert settings.kafka_bootstrap is not None
    bootstrap = settings.kafka_bootstrap

    async def attempt() -> tuple[AIOKafkaAdminClient, set[str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            return admin, set(await admin.list_topics())
        except BaseException:
            await admin.close()
            raise

    admin, existing = await wait_until_ready(attempt, "Kafka (admin)", KAFKA_NOT_READY, timeout_s)
    try:
        yield admin, existing
    finally:
        await admin.close()


def _configs(is_input: bool) -> dict[str, str]:
    if not is_input:
        return {}
    # Broker append time, not the producer's clock: the writer merges the two input topics by
    # it, and it is the ledger's `recorded_at`, so a replay of the log decides the same.
    return {"message.timestamp.type": "LogAppendTime"}
