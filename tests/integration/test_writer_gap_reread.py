"""A writer batch whose offsets pass over records is read again before anything of it is
applied (services/writer/gaps.py): a consumer position that ran ahead of the stored offset (the
race tests/integration/test_rebalance_void_race.py forces) heals on the re-read, and only a gap
the log itself holds (a transactional producer's markers, say) is applied on the look after the
re-read, counted as skipped. `writer.gaps.read_again` stands for the seek back that the
writer's poll makes (`StoredOffsets.read_again`), which these batches are applied without."""

from __future__ import annotations

import json
import time

import pytest
from aiokafka.structs import ConsumerRecord

from services.platform.metrics import REGISTRY
from services.platform.settings import Settings
from services.runtime import running
from services.writer.runner import LedgerWriter
from tests.messages import usage

pytestmark = pytest.mark.integration
PARTITION = 0


def record(settings: Settings, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps(usage("gappy", f"r{offset}", credits=1)).encode()
    return ConsumerRecord(
        topic=settings.usage_topic, partition=PARTITION, offset=offset,
        timestamp=int(time.time() * 1000), timestamp_type=1, key=b"gappy", value=value,
        checksum=None, serialized_key_size=5, serialized_value_size=len(value), headers=[],
    )  # fmt: skip


def skipped(settings: Settings) -> float:
    labels = {"consumer": settings.consumer_group, "topic": settings.usage_topic}
    return REGISTRY.get_sample_value("creditledger_offsets_skipped_records_total", labels) or 0.0


async def entries(writer: LedgerWriter) -> int:
    found = await writer.pool.fetchval("SELECT count(*) FROM ledger_entries")
    return int(found)


@pytest.mark.skips_offsets
async def test_a_gap_is_applied_only_when_a_second_look_finds_it_again(
    namespace: Settings,
) -> None:
    async with running(namespace, ()) as handle:
        writer = LedgerWriter(namespace, handle.pool, handle.producer, publish=False)
        before = skipped(namespace)
        assert await writer.apply_batch(PARTITION, [record(namespace, 0), record(namespace, 1)])
        assert await entries(writer) == 2

        ahead = [record(namespace, 4), record(namespace, 5)]  # 2 and 3 never arrived
        assert not await writer.apply_batch(PARTITION, ahead)
        assert await entries(writer) == 2  # nothing of it: the partition is read again
        assert skipped(namespace) == before
        writer.gaps.read_again([PARTITION])

        healed = [record(namespace, n) for n in (2, 3, 4, 5)]  # the re-read brought them
        assert await writer.apply_batch(PARTITION, healed)
        assert await entries(writer) == 6
        assert skipped(namespace) == before

        inner = [record(namespace, 6), record(namespace, 8)]  # 7: a marker, say
        assert not await writer.apply_batch(PARTITION, inner)
        assert not await writer.apply_batch(PARTITION, inner)  # retried: not read again yet
        assert await entries(writer) == 6
        writer.gaps.read_again([PARTITION])
        assert await writer.apply_batch(PARTITION, inner)  # the same gap again: the log's
        assert await entries(writer) == 8
        assert skipped(namespace) - before == 1
