"""`creditledger_consumer_lag_records` covers every partition of the consumed topics, on real
Kafka and Postgres: a partition with no stored offset lags from its log start (where the writer,
seeking to the beginning, would resume), not from 0, and so does one whose stored offset
retention has deleted."""

from __future__ import annotations

import re

import httpx
import pytest

from services.api.app import create_app
from services.platform.settings import Settings
from services.runtime import Running, running
from tests.pipeline import usage_with_deleted_start

pytestmark = pytest.mark.integration
LAG = re.compile(
    r'^creditledger_consumer_lag_records\{consumer="(\w+)",partition="(\d+)",topic="([^"]+)"\}'
    r" (\d+)\.0$",
    re.MULTILINE,
)


async def lags(handle: Running, settings: Settings) -> dict[tuple[str, str, int], int]:
    app = create_app(settings, handle.pool, handle.producer)  # fresh: nothing cached
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        text = (await c.get("/metrics")).text
    return {(c, t, int(p)): int(n) for c, p, t, n in LAG.findall(text)}


async def test_lag_covers_every_partition_from_its_log_start(namespace: Settings) -> None:
    async with running(namespace, ()) as handle:  # no writer, no projector: nothing stored
        # as retention would: the log now starts at offset 3
        tp = await usage_with_deleted_start(handle.producer, namespace, "lagging", 7, 3)
        partition = tp.partition

        found = await lags(handle, namespace)
        every = namespace.topic_partitions
        assert sorted(found) == sorted(
            [("writer", t, p) for t in namespace.input_topics for p in range(every)]
            + [("projector", namespace.ledger_topic, p) for p in range(every)]
        )
        usage_lag = {p: n for (c, t, p), n in found.items() if t == namespace.usage_topic}
        assert usage_lag == {p: 4 if p == partition else 0 for p in range(every)}

        stored = "INSERT INTO kafka_offsets VALUES ($1, $2, $3, $4)"
        await handle.pool.execute(stored, namespace.consumer_group, tp.topic, partition, 1)
        deleted_below = await lags(handle, namespace)
        assert deleted_below[("writer", tp.topic, partition)] == 4  # resumes at 3, not at 1
        await handle.pool.execute(
            "UPDATE kafka_offsets SET next_offset = 5 WHERE topic = $1", tp.topic
        )
        assert (await lags(handle, namespace))[("writer", tp.topic, partition)] == 2
