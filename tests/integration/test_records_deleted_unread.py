"""Records deleted (retention) before the writer ever read their partition: its first batch
passes over them, so it reads the partition again (services/writer/gaps.py), and the
re-read finds the stored offset below the log start: counted there
(`creditledger_offsets_below_log_start_total`), not as records skipped, which every test
asserts stays 0 (tests/conftest.py `no_offset_skipped`; a gap found again is counted:
tests/integration/test_writer_gap_reread.py)."""

from __future__ import annotations

import pytest

from services.platform.metrics import REGISTRY
from services.platform.settings import Settings
from services.runtime import running
from tests.pipeline import usage_with_deleted_start, wait_for_consumed

pytestmark = pytest.mark.integration


def below_start(settings: Settings) -> float:
    labels = {"consumer": settings.consumer_group, "topic": settings.usage_topic}
    found = REGISTRY.get_sample_value("creditledger_offsets_below_log_start_total", labels)
    return found or 0.0


@pytest.mark.skips_offsets  # its first batch is read again (a warning otherwise)
async def test_records_deleted_before_the_first_read_are_counted_below_the_log_start(
    namespace: Settings,
) -> None:
    async with running(namespace, ()) as handle:  # nothing consumes yet
        # as retention would: the log now starts at offset 3
        await usage_with_deleted_start(handle.producer, namespace, "skipped", 7, 3)
    before = below_start(namespace)
    async with running(namespace, ("writer",)) as pipeline:
        await wait_for_consumed(pipeline.pool, namespace, 7, pipeline.tasks)
        entries = await pipeline.pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE account_id = 'skipped'"
        )
    assert entries == 4  # offsets 3..6
    assert below_start(namespace) - before == 1  # offsets 0..2, never read
