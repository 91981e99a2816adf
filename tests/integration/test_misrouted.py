"""Records on another partition than their account's (a librdkafka producer's default
partitioner) are forwarded to it and applied there, in order with the account's commands."""

from __future__ import annotations

import json

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.platform.metrics import REGISTRY
from services.platform.settings import Settings
from services.runtime import running
from services.writer.plan import FORWARDED_FROM_HEADER, home_partition
from tests.messages import at, grant, usage
from tests.pipeline import Driver, read_topic

pytestmark = pytest.mark.integration

ACCOUNT = "acct_misrouted"
CALLS = 20
CREDITS = 2
GRANTED = 100


def misrouted_count(settings: Settings) -> float:
    labels = {"topic": settings.usage_topic}
    return REGISTRY.get_sample_value("creditledger_misrouted_records_total", labels) or 0.0


async def send_to(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    value: bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    ack = await producer.send(
        topic, value, key=ACCOUNT.encode(), partition=partition, headers=headers
    )
    await ack


async def charged(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """(consume entries, processed requests, balance) of the account."""
    entries = await pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND reason = 'consume'", ACCOUNT
    )
    processed = await pool.fetchval(
        "SELECT count(*) FROM processed_requests WHERE account_id = $1", ACCOUNT
    )
    balance = await pool.fetchval(
        "SELECT balance FROM writer_accounts WHERE account_id = $1", ACCOUNT
    )
    return int(entries), int(processed), int(balance)


async def test_misrouted_usage_after_a_grant_is_charged_from_it_once(namespace: Settings) -> None:
    partitions = namespace.topic_partitions
    home = home_partition(ACCOUNT, partitions)
    away = (home + 1) % partitions
    calls = [
        json.dumps(usage(ACCOUNT, f"req-{n}", credits=CREDITS, occurred_at=at(1 + n))).encode()
        for n in range(CALLS)
    ]
    before = misrouted_count(namespace)
    # The writer is stopped: the grant (keyed, murmur2: the account's partition), then the calls
    # on another partition, as librdkafka's default partitioner may put them.
    async with running(namespace, ("projector",)) as side:
        grant_value = json.dumps(grant(ACCOUNT, GRANTED, "g-1")).encode()
        await send_to(side.producer, namespace.commands_topic, home, grant_value)
        for value in calls:
            await send_to(side.producer, namespace.usage_topic, away, value)

    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        driver.published = 1 + CALLS + CALLS  # the grant, the calls, their forwarded copies
        await driver.settled()
        entries = await driver.entries(ACCOUNT)
        grants = [e for e in entries if e["reason"] == "grant"]
        consumes = [e for e in entries if e["reason"] == "consume"]
        assert len(grants) == 1 and grants[0]["seq"] == 1, "the grant is applied first"
        assert len(consumes) == CALLS
        assert all(e["bucket_grant_id"] == grants[0]["bucket_grant_id"] for e in consumes)
        assert all(e["delta"] == -CREDITS and e["balance_after"] >= 0 for e in consumes)
        assert await charged(pipeline.pool) == (CALLS, CALLS, GRANTED - CALLS * CREDITS)
        assert (await driver.view(ACCOUNT))["balance"] == GRANTED - CALLS * CREDITS
        assert misrouted_count(namespace) - before == CALLS
        # The copies: on the account's partition, the same bytes, naming where they came from;
        # each consume's recorded_at is its copy's log append time.
        records = await read_topic(namespace, namespace.usage_topic, 2 * CALLS)
        originals = {r.offset: r for r in records if r.partition == away}
        copies = [r for r in records if r.partition == home]
        assert len(originals) == len(copies) == CALLS
        for copy in copies:
            origin = dict(copy.headers)[FORWARDED_FROM_HEADER].decode()
            topic, partition, offset = origin.rsplit("/", 2)
            assert (topic, int(partition)) == (namespace.usage_topic, away)
            assert copy.value == originals[int(offset)].value and copy.key == ACCOUNT.encode()
        by_request = {json.loads(c.value)["request_id"]: c.timestamp for c in copies}
        recorded = {
            e["source"].split(":", 1)[1]: int(e["recorded_at"].timestamp() * 1000) for e in consumes
        }
        assert recorded == by_request

    # A restart forwards nothing again; a copy the relay sent twice (a crash between Kafka's
    # acknowledgement and the outbox delete) and a producer's retry of a misrouted call change
    # nothing either: the ids are already taken with the same payload.
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        driver.published = 1 + CALLS + CALLS
        resent = copies[0]
        headers = [(name, bytes(value)) for name, value in resent.headers]
        await send_to(pipeline.producer, namespace.usage_topic, home, resent.value, headers)
        await send_to(pipeline.producer, namespace.usage_topic, away, calls[0])
        driver.published += 1 + 2  # the resent copy, the retried call and its forward
        await driver.settled()
        assert await charged(pipeline.pool) == (CALLS, CALLS, GRANTED - CALLS * CREDITS)
        assert len(await driver.entries(ACCOUNT)) == 1 + CALLS
        assert misrouted_count(namespace) - before == CALLS + 1  # the retried call, once
        assert await pipeline.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
