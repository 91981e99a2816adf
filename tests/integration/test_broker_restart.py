"""A broker restart under load: the publisher and the writer lose nothing and double nothing."""

from __future__ import annotations

import asyncio

import pytest

from services.platform import stack
from services.platform.settings import Settings
from services.producer.publisher import UsagePublisher, publish_usage
from services.runtime import running
from tests.messages import at, grant
from tests.pipeline import Driver
from tests.servers import Servers

pytestmark = pytest.mark.integration
EVENTS = 1200


async def test_a_broker_restart_loses_and_doubles_nothing(
    namespace: Settings, servers: Servers
) -> None:
    if servers.stack_dir is None:
        pytest.skip("needs the project's own broker to restart (servers came from elsewhere)")
    assert namespace.kafka_bootstrap is not None
    async with running(namespace, ("writer", "projector")) as handle:
        driver = Driver(namespace, handle.pool, handle.producer, handle.tasks)
        await driver.commands(grant("restart", 10**6, "g"))
        await driver.settled()
        async with UsagePublisher(
            namespace.kafka_bootstrap, topic=namespace.usage_topic, max_in_flight=100
        ) as publisher:
            for n in range(EVENTS):
                if n == EVENTS // 3:  # a third in: the broker goes down and comes back
                    restart = asyncio.create_task(
                        asyncio.to_thread(stack.restart_kafka, servers.stack_dir)
                    )
                await publish_usage(
                    publisher, account_id="restart", request_id=f"r{n}",
                    endpoint="POST /v1/scanner/scan", status_code=200, credits=1,
                    occurred_at=at(1),
                )  # fmt: skip
                if n % 50 == 0:
                    await asyncio.sleep(0.01)  # a paced producer: the restart lands mid-stream
            await restart
        driver.published += EVENTS
        await driver.settled()
        processed = await handle.pool.fetchval("SELECT count(*) FROM processed_requests")
        balance = await handle.pool.fetchval(
            "SELECT balance FROM balance_view WHERE account_id = 'restart'"
        )
        dead = await handle.pool.fetchval("SELECT count(*) FROM dead_letters")
    assert (processed, balance, dead) == (EVENTS, 10**6 - EVENTS, 0)
