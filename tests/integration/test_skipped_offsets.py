"""The consumers count the offsets a committed batch passes over without their records
(`creditledger_offsets_skipped_records_total`): records that will never be applied. Every other
test asserts none (tests/conftest.py `no_offset_skipped`): our producers are not transactional,
so a gap is a lost record. Here the only way a real log makes one: records deleted (retention)
before the writer ever read the partition."""

from __future__ import annotations

import json

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from services.platform.metrics import REGISTRY
from services.platform.settings import Settings
from services.runtime import running
from tests.messages import usage
from tests.pipeline import wait_for_consumed

pytestmark = pytest.mark.integration


def skipped(settings: Settings) -> float:
    labels = {"consumer": settings.consumer_group, "topic": settings.usage_topic}
    return REGISTRY.get_sample_value("creditledger_offsets_skipped_records_total", labels) or 0.0


@pytest.mark.skips_offsets
async def test_records_deleted_before_the_first_read_are_counted_as_skipped(
    namespace: Settings,
) -> None:
    async with running(namespace, ()) as handle:  # nothing consumes yet
        sent = [
            await handle.producer.send_and_wait(
                namespace.usage_topic,
                json.dumps(usage("skipped", f"r{n}", credits=1)).encode(),
                key=b"skipped",
            )
            for n in range(7)
        ]
        (partition,) = {s.partition for s in sent}
        admin = AIOKafkaAdminClient(bootstrap_servers=namespace.kafka_bootstrap)
        await admin.start()
        try:  # as retention would: the log now starts at offset 3
            tp = TopicPartition(namespace.usage_topic, partition)
            assert await admin.delete_records({tp: RecordsToDelete(3)}) == {tp: 3}
        finally:
            await admin.close()
    before = skipped(namespace)
    async with running(namespace, ("writer",)) as pipeline:
        await wait_for_consumed(pipeline.pool, namespace, 7, pipeline.tasks)
        entries = await pipeline.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE account_id = 'skipped'"
        )
    assert entries == 4  # offsets 3..6
    assert skipped(namespace) - before == 3  # offsets 0..2, never read
