"""Kafka clients with the settings correctness needs, topic creation and the topics' check.

Every aiokafka client of the project is built here, from `client_kwargs(settings)`: the
bootstrap servers and the security settings (TLS, SASL), so no client can be left on PLAINTEXT
when the cluster asks for more (tests/unit/test_kafka_security.py checks no other module builds
one).

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
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from services.platform.settings import Settings, dead_letter_topic
from services.platform.startup import KAFKA_NOT_READY, wait_until_ready
from services.platform.topic_metadata import (
    RETENTION_MS,
    TIMESTAMP_TYPE,
    describe_topics,
    topic_configs,
)

log = logging.getLogger("creditledger.kafka")
LOG_APPEND_TIME = "LogAppendTime"
# Metadata is refreshed at least this often: a partition or topic added is seen within seconds
# (aiokafka's default is 5 minutes; the issue saw a 4 min 44 s wait for re-created topics).
METADATA_MAX_AGE_MS = 5000
# After creating topics, how long the check waits for the broker's metadata to show them.
TOPICS_VISIBLE_WAIT_S = 10.0
TOPICS_CHECK_POLL_S = 0.1
# A round trip on loopback and the fetch response's decoding, with room to spare.
TOP_UP_SLACK_MS = 10


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


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client gets: where the brokers are and how to talk
    to them (`CREDITLEDGER_KAFKA_SECURITY_PROTOCOL` and friends, services/platform/settings.py).
    """
    if not settings.kafka_bootstrap:
        raise ValueError("no Kafka bootstrap servers configured (CREDITLEDGER_KAFKA_BOOTSTRAP)")
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,  # None: the system's trusted CAs
            certfile=settings.kafka_ssl_certfile,  # client certificate (mutual TLS), optional
            keyfile=settings.kafka_ssl_keyfile,
        )
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        username, password = settings.kafka_sasl_username, settings.kafka_sasl_password
        if not username or password is None:
            raise ValueError(
                f"CREDITLEDGER_KAFKA_SECURITY_PROTOCOL={protocol} needs"
                " CREDITLEDGER_KAFKA_SASL_USERNAME and CREDITLEDGER_KAFKA_SASL_PASSWORD"
            )
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=username,  # aiokafka's name for PLAIN and SCRAM alike
            sasl_plain_password=password.get_secret_value(),
        )
    return kwargs


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried send is written once and in order per partition.
    options: dict[str, Any] = {
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
        **overrides,
    }
    return AIOKafkaProducer(**client_kwargs(settings), **options)


async def start_producer(settings: Settings, wait_s: float = 0.0) -> AIOKafkaProducer:
    """A started `new_producer`, waiting up to `wait_s` for a broker that is not ready yet."""

    async def attempt() -> AIOKafkaProducer:
        producer = new_producer(settings)  # a fresh client per try: a failed start closes it
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    return await wait_until_ready(attempt, "Kafka (producer)", KAFKA_NOT_READY, wait_s)


def new_consumer(settings: Settings, group_id: str, max_records: int) -> AIOKafkaConsumer:
    # Offsets live in Postgres (auto commit off). The range assignor gives one member partition
    # p of every input topic, so one writer sees all of an account's usage and commands.
    return AIOKafkaConsumer(
        **client_kwargs(settings),
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
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=settings.fetch_max_partition_bytes,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


def top_up_ms(settings: Settings) -> int:
    """How long a poll that found records waits for more (offsets.StoredOffsets._top_up): the
    fetch in flight (held at most `fetch_max_wait_ms`), then the one the drain starts, which
    finds records waiting and comes straight back."""
    return settings.fetch_max_wait_ms + TOP_UP_SLACK_MS


def new_reader(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """A consumer with `options` as given: in no group (history tools, offsets and lag reads:
    assigned partitions), or the webhook worker's own group (it commits to Kafka)."""
    return AIOKafkaConsumer(**client_kwargs(settings), **options)


def new_admin(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_kwargs(settings), **options)


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
            inputs, rf = set(settings.input_topics), settings.topic_replication_factor
            new_topics = [
                NewTopic(
                    t, settings.topic_partitions, rf, topic_configs=_configs(settings, t in inputs)
                )
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(new_topics)
        # Then every contract topic is checked (created here or by someone else): raise naming
        # what is wrong. Topics just created may take a moment to show in metadata.
        deadline = time.monotonic() + (TOPICS_VISIBLE_WAIT_S if missing else 0.0)
        while problems := await topic_problems(admin._client, settings):
            # Wait only while a topic just created is not visible yet (then it is named too).
            showing = not any(problems.get(t) == MISSING for t in missing)
            if time.monotonic() >= deadline or showing:
                raise TopicsNotReady(problems)
            await asyncio.sleep(TOPICS_CHECK_POLL_S)  # polling the broker's metadata


MISSING = "missing"


async def topic_problems(client: Any, settings: Settings) -> dict[str, str]:
    """What is wrong with each contract topic, by name; empty when all is right.

    Every topic (inputs, their DLTs, ledger, alerts) must exist, with at least
    `topic_replication_factor` replicas of each partition; the inputs must carry
    `message.timestamp.type=LogAppendTime` (the writer merges them by it) and have as many
    partitions as each other (an account's usage and commands share a partition index); the
    inputs and the ledger topic (the source of replay) must keep their records at least
    `topic_retention_ms` (-1: forever). `client` is a started aiokafka client (a producer's
    `.client`, an admin's `_client`)."""
    topics = all_topics(settings)
    info = await describe_topics(client, topics)
    problems: dict[str, list[str]] = {t: [MISSING] for t in topics if t not in info}

    def add(topic: str, problem: str) -> None:
        problems.setdefault(topic, []).append(problem)

    rf = settings.topic_replication_factor
    for topic, found in info.items():
        if found.replicas < rf:
            add(topic, f"replication factor is {found.replicas}, not {rf}")
    inputs = [t for t in settings.input_topics if t in info]
    replayed = [*inputs, *([settings.ledger_topic] if settings.ledger_topic in info else [])]
    configs = await topic_configs(client, replayed, (TIMESTAMP_TYPE, RETENTION_MS))
    for topic in inputs:
        kind = configs.get(topic, {}).get(TIMESTAMP_TYPE)
        if kind != LOG_APPEND_TIME:
            add(topic, f"{TIMESTAMP_TYPE} is {kind}, not {LOG_APPEND_TIME}")
    for topic in replayed:
        retention = configs.get(topic, {}).get(RETENTION_MS)
        if retention is not None and not _keeps(int(retention), settings.topic_retention_ms):
            add(topic, f"{RETENTION_MS} is {retention}, less than {settings.topic_retention_ms}"
                " (the log is the source of replay)")  # fmt: skip
    usage, commands = settings.usage_topic, settings.commands_topic
    if usage in info and commands in info and info[usage].partitions != info[commands].partitions:
        counts = f"{usage} has {info[usage].partitions}, {commands} {info[commands].partitions}"
        for topic in (usage, commands):
            add(topic, f"unequal partition counts ({counts}): an account's records must share one")
    return {topic: "; ".join(found) for topic, found in problems.items()}


def _keeps(retention_ms: int, wanted_ms: int) -> bool:
    """A topic's retention keeps at least what the settings ask (-1: forever)."""
    if retention_ms < 0:
        return True
    return wanted_ms >= 0 and retention_ms >= wanted_ms


def describe_problems(problems: dict[str, str]) -> str:
    return "; ".join(f"topic {topic}: {problem}" for topic, problem in sorted(problems.items()))


@contextlib.asynccontextmanager
async def _admin(
    settings: Settings, timeout_s: float
) -> AsyncIterator[tuple[AIOKafkaAdminClient, set[str]]]:
    """An admin client, started within `timeout_s` (with backoff), and the topics that exist."""

    async def attempt() -> tuple[AIOKafkaAdminClient, set[str]]:
        admin = new_admin(settings, metadata_max_age_ms=METADATA_MAX_AGE_MS)
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


def min_insync_replicas(settings: Settings) -> int:
    """min.insync.replicas of the topics created: as set, or min(2, replication factor - 1)."""
    rf = settings.topic_replication_factor
    return settings.topic_min_insync_replicas or max(1, min(2, rf - 1))


def _configs(settings: Settings, is_input: bool) -> dict[str, str]:
    configs = {
        RETENTION_MS: str(settings.topic_retention_ms),
        "min.insync.replicas": str(min_insync_replicas(settings)),
    }
    if is_input:
        # Broker append time, not the producer's clock: the writer merges the two input topics
        # by it, and it is the ledger's `recorded_at`, so a replay of the log decides the same.
        configs[TIMESTAMP_TYPE] = LOG_APPEND_TIME
    return configs
