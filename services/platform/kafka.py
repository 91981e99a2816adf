"""Kafka clients with the settings correctness needs, topic creation and the topics' check.

No topic appears behind the operator's back: the local broker runs with
`auto.create.topics.enable=false`, and no client of this process asks for auto-creation. aiokafka
0.14 has no `allow_auto_create_topics` option (kafka-python's name for it): every metadata
request it builds asks for auto-creation. `_MetadataRequestNoAutoCreate` replaces the request
class in the two aiokafka modules that build them, so every aiokafka client in a process that
imports this module (the project's, and the history tools') asks without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiokafka.admin.client
import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from services.platform.settings import Settings, dead_letter_topic
from services.platform.startup import KAFKA_NOT_READY, wait_until_ready
from services.platform.topic_metadata import TIMESTAMP_TYPE, describe_topics, timestamp_types

log = logging.getLogger("creditledger.kafka")
LOG_APPEND_TIME = "LogAppendTime"
# Metadata is refreshed at least this often: a partition or topic added is seen within seconds
# (aiokafka's default is 5 minutes; the issue saw a 4 min 44 s wait for re-created topics).
METADATA_MAX_AGE_MS = 5000
# After creating topics, how long the check waits for the broker's metadata to show them.
TOPICS_VISIBLE_WAIT_S = 10.0
TOPICS_CHECK_POLL_S = 0.1


class _MetadataRequestNoAutoCreate(MetadataRequest):  # type: ignore[misc]
    def __init__(self, topics: Any = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, bool(allow_auto_topic_creation))  # None (the default): no


aiokafka.client.MetadataRequest = _MetadataRequestNoAutoCreate
aiokafka.admin.client.MetadataRequest = _MetadataRequestNoAutoCreate


class TopicsNotReady(RuntimeError):
    """A contract topic is missing or has the wrong settings; `problems` names each."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(describe_problems(problems))
        self.problems = problems


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried send is written once and in order per partition.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
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
        # Where a partition resumes is decided by offsets.StoredOffsets (stored offset, topic
        # incarnation, log bounds), never by aiokafka: an offset out of range raises to it.
        auto_offset_reset="none",
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
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
        # Then every contract topic is checked (created here or by someone else): raise naming
        # what is wrong. Topics just created may take a moment to show in metadata.
        deadline = time.monotonic() + (TOPICS_VISIBLE_WAIT_S if missing else 0.0)
        while problems := await topic_problems(admin._client, settings):
            if time.monotonic() >= deadline or any(p != MISSING for p in problems.values()):
                raise TopicsNotReady(problems)
            await asyncio.sleep(TOPICS_CHECK_POLL_S)  # polling the broker's metadata


MISSING = "missing"


async def topic_problems(client: Any, settings: Settings) -> dict[str, str]:
    """What is wrong with each contract topic, by name; empty when all is right.

    Every topic (inputs, their DLTs, ledger, alerts) must exist; the inputs must carry
    `message.timestamp.type=LogAppendTime` (the writer merges them by it) and have as many
    partitions as each other (an account's usage and commands share a partition index).
    `client` is a started aiokafka client (a producer's `.client`, an admin's `_client`)."""
    topics = all_topics(settings)
    info = await describe_topics(client, topics)
    problems = {t: MISSING for t in topics if t not in info}
    inputs = [t for t in settings.input_topics if t in info]
    for topic, kind in (await timestamp_types(client, inputs)).items():
        if kind != LOG_APPEND_TIME:
            problems[topic] = f"{TIMESTAMP_TYPE} is {kind}, not {LOG_APPEND_TIME}"
    usage, commands = settings.usage_topic, settings.commands_topic
    if usage in info and commands in info and info[usage].partitions != info[commands].partitions:
        counts = f"{usage} has {info[usage].partitions}, {commands} {info[commands].partitions}"
        for topic in (usage, commands):
            unequal = f"unequal partition counts ({counts}): an account's records must share one"
            problems[topic] = "; ".join(filter(None, (problems.get(topic), unequal)))
    return problems


def describe_problems(problems: dict[str, str]) -> str:
    return "; ".join(f"topic {topic}: {problem}" for topic, problem in sorted(problems.items()))


@contextlib.asynccontextmanager
async def _admin(
    settings: Settings, timeout_s: float
) -> AsyncIterator[tuple[AIOKafkaAdminClient, set[str]]]:
    """An admin client, started within `timeout_s` (with backoff), and the topics that exist."""
    assert settings.kafka_bootstrap is not None
    bootstrap = settings.kafka_bootstrap

    async def attempt() -> tuple[AIOKafkaAdminClient, set[str]]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, metadata_max_age_ms=METADATA_MAX_AGE_MS
        )
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
    return {TIMESTAMP_TYPE: LOG_APPEND_TIME}
