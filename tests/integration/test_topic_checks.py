"""No topic appears behind the operator's back (issue 13, item 2), on real Kafka and Postgres.

`/readyz` (every process serves it) answers 503 naming a contract topic that is missing or has
the wrong settings, start-up refuses them, and the broker refuses to auto-create a topic.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from services.api.app import create_app
from services.platform.kafka import TopicsNotReady, all_topics, ensure_topics, start_producer
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.platform.topic_metadata import UNKNOWN_TOPIC_OR_PARTITION
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(namespace: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=namespace.kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def _elsewhere(settings: Settings) -> Settings:
    """The same database, topics of a prefix of their own (deleted by the test)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}.checks."
    return settings.model_copy(
        update={
            "usage_topic": prefix + "credits.usage.v1",
            "commands_topic": prefix + "credits.commands.v1",
            "ledger_topic": prefix + "credits.ledger.v1",
            "alerts_topic": prefix + "credits.alerts.v1",
        }
    )


async def _readyz(settings: Settings, producer: AIOKafkaProducer) -> httpx.Response:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, 2)
    try:
        app = create_app(settings, pool, producer, ops_only=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.get("/readyz")
    finally:
        await pool.close()


async def test_readyz_names_missing_and_misconfigured_topics(
    namespace: Settings, admin: AIOKafkaAdminClient
) -> None:
    assert namespace.kafka_bootstrap is not None
    wrong, count = _elsewhere(namespace), namespace.topic_partitions
    log_append = {"message.timestamp.type": "LogAppendTime"}
    # Commands with the producer's clock; usage missing; everything else as the contract says.
    await admin.create_topics(
        [
            NewTopic(
                wrong.commands_topic,
                count,
                1,
                topic_configs={"message.timestamp.type": "CreateTime"},
            ),
            *(NewTopic(t, count, 1) for t in all_topics(wrong) if t not in wrong.input_topics),
        ]
    )
    created = [t for t in all_topics(wrong) if t != wrong.usage_topic]
    await _until(admin, lambda listed: set(created) <= listed, "the topics to be created")
    producer = await start_producer(namespace)
    try:
        good = await _readyz(namespace, producer)
        assert good.status_code == 200, good.text
        assert good.json()["checks"]["kafka"] == "ok"

        answer = await _readyz(wrong, producer)
        assert answer.status_code == 503
        body = answer.json()
        assert body["failing"] == ["kafka"]
        assert body["topics"] == {
            wrong.usage_topic: "missing",
            wrong.commands_topic: "message.timestamp.type is CreateTime, not LogAppendTime",
        }
        assert f"topic {wrong.usage_topic}: missing" in body["checks"]["kafka"]
        assert f"topic {wrong.commands_topic}: message.timestamp.type" in body["checks"]["kafka"]

        # Start-up creates what is missing, then refuses what it cannot fix.
        with pytest.raises(TopicsNotReady) as refused:
            await ensure_topics(wrong)
        assert refused.value.problems == {
            wrong.commands_topic: "message.timestamp.type is CreateTime, not LogAppendTime"
        }

        # Unequal partition counts between the inputs: both named.
        await admin.delete_topics([wrong.commands_topic])
        await _until(admin, lambda listed: wrong.commands_topic not in listed, "the deletion")
        await admin.create_topics(
            [NewTopic(wrong.commands_topic, count + 1, 1, topic_configs=log_append)]
        )
        await _until(admin, lambda listed: wrong.commands_topic in listed, "the re-creation")
        answer = await _readyz(wrong, producer)
        assert answer.status_code == 503
        topics = answer.json()["topics"]
        assert set(topics) == {wrong.usage_topic, wrong.commands_topic}
        assert all("unequal partition counts" in problem for problem in topics.values())
    finally:
        await producer.stop()
        await admin.delete_topics([t for t in all_topics(wrong) if t in await admin.list_topics()])


async def _until(
    admin: AIOKafkaAdminClient, condition: Callable[[set[str]], bool], what: str
) -> None:
    async def holds() -> bool:
        return condition(set(await admin.list_topics()))

    await wait_until(holds, what, deadline_s=30)


async def test_the_broker_does_not_auto_create_topics(
    namespace: Settings, admin: AIOKafkaAdminClient
) -> None:
    assert namespace.kafka_bootstrap is not None
    unknown = f"test-{uuid.uuid4().hex[:12]}.never-created"
    # A foreign client asking for auto-creation (aiokafka's own request, before our override).
    request = MetadataRequest([unknown], allow_auto_topic_creation=True)
    node = admin._client.get_random_node()
    response = await admin._client.send(node, request)
    assert [t[0] for t in response.topics] == [UNKNOWN_TOPIC_OR_PARTITION]
    # A produce to an unknown topic fails instead of creating it.
    producer = AIOKafkaProducer(
        bootstrap_servers=namespace.kafka_bootstrap, request_timeout_ms=2000
    )
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait(unknown, b"{}", key=b"acct")
    finally:
        await producer.stop()
    assert unknown not in await admin.list_topics()


async def test_readyz_accepts_the_configured_retention_and_names_a_shorter_one(
    namespace: Settings, admin: AIOKafkaAdminClient
) -> None:
    day_ms = 86_400_000
    kept_a_day = _elsewhere(namespace).model_copy(update={"topic_retention_ms": day_ms})
    await ensure_topics(kept_a_day)  # created with retention.ms = one day
    producer = await start_producer(namespace)
    try:
        assert (await _readyz(kept_a_day, producer)).status_code == 200  # as configured
        forever = kept_a_day.model_copy(update={"topic_retention_ms": -1})
        answer = await _readyz(forever, producer)
        assert answer.status_code == 503
        replayed = {*forever.input_topics, forever.ledger_topic}
        assert answer.json()["topics"] == {
            t: f"retention.ms is {day_ms}, less than -1 (the log is the source of replay)"
            for t in replayed
        }
        more_replicas = kept_a_day.model_copy(update={"topic_replication_factor": 3})
        topics = (await _readyz(more_replicas, producer)).json()["topics"]
        assert set(topics) == set(all_topics(more_replicas))
        assert all(p == "replication factor is 1, not 3" for p in topics.values())
    finally:
        await producer.stop()
        existing = await admin.list_topics()
        await admin.delete_topics([t for t in all_topics(kept_a_day) if t in existing])
