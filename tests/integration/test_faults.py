"""Faults on real servers: Postgres connections dropped under load."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.messages import grant
from tests.pipeline import Driver
from tests.servers import Servers
from tests.workload import ACCOUNTS, GRANT_CREDITS, balances, expected_balances, workload

pytestmark = pytest.mark.integration
TERMINATE_BACKENDS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid()
"""


async def drop_connections(admin_url: str, database: str, times: int, every_s: float) -> int:
    """A fault schedule: terminate every backend of `database`, `times` times."""
    admin = await asyncpg.connect(admin_url)
    dropped = 0
    try:
        for _ in range(times):
            dropped += int(await admin.fetchval(TERMINATE_BACKENDS, database))
            await asyncio.sleep(every_s)
    finally:
        await admin.close()
    return dropped


async def test_dropped_postgres_connections_are_retried_without_loss(
    namespace: Settings, servers: Servers
) -> None:
    events = workload(seed=4, calls=1200)
    assert namespace.database_url is not None
    database = namespace.database_url.rsplit("/", 1)[1]
    small_batches = namespace.model_copy(update={"batch_max_records": 50})
    async with running(small_batches, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        await driver.commands(*(grant(a, GRANT_CREDITS, f"g-{a}") for a in ACCOUNTS))
        await driver.settled()
        fault = asyncio.create_task(drop_connections(servers.database_url, database, 15, 0.05))
        await driver.usage(*events)
        dropped = await fault
        await driver.settled()
        assert dropped > 0, "the fault schedule dropped no connection: it tested nothing"
        assert await balances(pipeline.pool) == expected_balances(events)
        processed = await pipeline.pool.fetchval("SELECT count(*) FROM processed_requests")
        assert processed == len(events)
