"""Exactly once under crashes, several writers and replays, on real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.audit import audit
from services.history.replay import replay
from services.platform.failpoints import CRASH_EXIT_CODE
from services.platform.settings import Settings
from services.runtime import running
from tests.conftest import NamespaceFactory
from tests.messages import grant
from tests.pipeline import Driver, publish, wait_for_consumed
from tests.workload import (
    ACCOUNTS,
    GRANT_CREDITS,
    balances,
    expected_balances,
    ledger_sums,
    workload,
)

pytestmark = pytest.mark.integration


async def run_process(settings: Settings, component: str, failpoints: str) -> int:
    """`creditledger <component>` as a process, armed to crash; returns its exit code."""
    env = {
        **os.environ,
        "CREDITLEDGER_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "CREDITLEDGER_DATABASE_URL": str(settings.database_url),
        "CREDITLEDGER_USAGE_TOPIC": settings.usage_topic,
        "CREDITLEDGER_COMMANDS_TOPIC": settings.commands_topic,
        "CREDITLEDGER_LEDGER_TOPIC": settings.ledger_topic,
        "CREDITLEDGER_ALERTS_TOPIC": settings.alerts_topic,
        "CREDITLEDGER_CONSUMER_GROUP": settings.consumer_group,
        "CREDITLEDGER_PROJECTOR_GROUP": settings.projector_group,
        "CREDITLEDGER_ADMIN_TOKEN": "unused",
        "CREDITLEDGER_API_PORT": "0",
        "CREDITLEDGER_BATCH_MAX_RECORDS": "50",  # many small batches: a crash lands mid-stream
        "CREDITLEDGER_FAILPOINTS": failpoints,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", component, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert process.returncode == CRASH_EXIT_CODE, stderr.decode()[-2000:]
    return process.returncode


@pytest.mark.parametrize(
    "failpoint",
    ["writer.before_write:3", "writer.before_commit:3", "writer.after_commit:3",
     "outbox.after_publish:1"],
)  # fmt: skip
async def test_a_writer_killed_mid_stream_resumes_without_loss_or_double_count(
    namespace: Settings, failpoint: str
) -> None:
    events = workload(seed=1, calls=600)
    async with running(namespace, ("projector",)) as side:
        grants = [grant(a, GRANT_CREDITS, f"g-{a}") for a in ACCOUNTS]
        await publish(side.producer, namespace.commands_topic, grants)
        await publish(side.producer, namespace.usage_topic, events)
    await run_process(namespace, "writer", failpoint)
    # Grants and usage are on two topics: the crash run read them in some order, and so will
    # the restart. Every grant is large enough that the order does not change any balance.
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        driver.published = len(grants) + len(events)
        await driver.settled()
        assert await ledger_sums(pipeline.pool) == expected_balances(events)
        assert await balances(pipeline.pool) == expected_balances(events)
        processed = await pipeline.pool.fetchval("SELECT count(*) FROM processed_requests")
        assert processed == len(events)


@contextlib.asynccontextmanager
async def writer_instance(settings: Settings) -> AsyncIterator[None]:
    async with running(settings, ("writer",)):
        yield


async def test_three_writers_in_one_group_share_partitions_without_double_counting(
    namespace: Settings,
) -> None:
    events = workload(seed=2, calls=1500)
    small_batches = namespace.model_copy(update={"batch_max_records": 40})
    async with running(small_batches, ("projector",)) as side:
        grants = [grant(a, GRANT_CREDITS, f"g-{a}") for a in ACCOUNTS]
        await publish(side.producer, namespace.commands_topic, grants)
        async with writer_instance(small_batches), writer_instance(small_batches):
            leaving = writer_instance(small_batches)
            await leaving.__aenter__()
            await publish(side.producer, namespace.usage_topic, events[:750])
            await leaving.__aexit__(None, None, None)  # leaves under load: a rebalance
            await publish(side.producer, namespace.usage_topic, events[750:])
            driver = Driver(namespace, side.pool, side.producer, side.tasks)
            driver.published = len(grants) + len(events)
            await driver.settled()
        assert await balances(side.pool) == expected_balances(events)
        assert await ledger_sums(side.pool) == expected_balances(events)


async def test_the_ledger_is_a_function_of_the_input_log(
    namespace: Settings, make_namespace: NamespaceFactory
) -> None:
    events = workload(seed=3, calls=400)
    async with running(namespace, ("writer",)) as live:
        await publish(
            live.producer, namespace.commands_topic, [grant(a, 500, f"g-{a}") for a in ACCOUNTS]
        )
        await wait_for_consumed(live.pool, namespace, len(ACCOUNTS))
        await publish(live.producer, namespace.usage_topic, events)
        await wait_for_consumed(live.pool, namespace, len(ACCOUNTS) + len(events))
        live_rows = await live.pool.fetch("SELECT * FROM ledger_entries ORDER BY account_id, seq")
    fresh = await make_namespace()
    assert fresh.database_url is not None
    manifest = await replay(namespace, fresh.database_url)
    assert manifest.equal, manifest.differing_accounts
    assert manifest.entries == len(live_rows)
    assert sum(sum(p.values()) for p in manifest.end_offsets.values()) == len(ACCOUNTS) + len(
        events
    )
    replayed_rows = await _all_rows(fresh.database_url)
    assert namespace.database_url is not None
    live_rows = await _all_rows(namespace.database_url)  # both read the same way
    assert len(live_rows) > len(events) / 2
    assert [dict(r) for r in replayed_rows] == [dict(r) for r in live_rows]


async def _all_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM ledger_entries ORDER BY account_id, seq")
    finally:
        await conn.close()


@pytest.mark.parametrize("failpoint", ["projector.before_commit:3", "projector.after_commit:3"])
async def test_a_projector_killed_mid_stream_resumes_without_double_counting(
    namespace: Settings, failpoint: str
) -> None:
    events = workload(seed=5, calls=600)
    small_batches = namespace.model_copy(update={"batch_max_records": 50})
    async with running(small_batches, ("writer",)) as live:
        grants = [grant(a, GRANT_CREDITS, f"g-{a}") for a in ACCOUNTS]
        await publish(live.producer, namespace.commands_topic, grants)
        await wait_for_consumed(live.pool, namespace, len(grants), live.tasks)
        await publish(live.producer, namespace.usage_topic, events)
        await wait_for_consumed(live.pool, namespace, len(grants) + len(events), live.tasks)
    await run_process(namespace, "projector", failpoint)
    async with running(namespace, ("projector",)) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        driver.published = len(grants) + len(events)
        await driver.settled()
        assert await balances(pipeline.pool) == expected_balances(events)
        assert (await audit(pipeline.pool)).drifts == []
