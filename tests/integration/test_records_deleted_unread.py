"""Records deleted (retention) before the writer ever read their partition: its first batch
passes over them, so it reads the partition again (services/writer/runner.py `_gaps`), and the
re-read finds the stored offset below the log start: counted there
(`creditledger_offsets_below_log_start_total`), not as records skipped, which every test
asserts stays 0 (tests/conftest.py `no_offset_skipped`; a gap found again is counted:
tests/integration/test_writer_gap_reread.py)."""

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


def below_start(settings: Settings) -> float:
    labels = {"consumer": settings.consumer_group, "topic": settings.usage_topic}
    found = REGISTRY.get_sample_value("creditledger_offsets_below_log_start_total", labels)
    return found or 0.0


async def test_records_deleted_before_the_first_read_are_counted_below_the_log_start(
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
    before = below_start(namespace)
    async with running(namespace, ("writer",)) as pipeline:
        await wait_for_consumed(pipeline.pool, namespace, 7, pipeline.tasks)
        entries = await pipeline.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE account_id = 'skipped'"
        )
    assert entries == 4  # offsets 3..6
    assert below_start(namespace) - before == 1  # offsets 0..2, never read
