"""replay and reprice refuse, naming the range, a Kafka log that lacks records the ledger has
(the start of a partition deleted, the topic deleted and re-created), on real Kafka and Postgres;
with the whole log they answer."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from services.core.pricing import PriceBook
from services.history.coverage import LogGapError, log_gaps, log_ranges
from services.history.replay import replay
from services.history.reprice import reprice, totals
from services.platform.kafka import ensure_topics
from services.platform.settings import Settings
from services.runtime import running
from tests.conftest import NamespaceFactory
from tests.messages import T0, at, grant, usage
from tests.pipeline import Driver, read_topic, wait_until

pytestmark = pytest.mark.integration
ACCOUNTS = [f"gap-{n}" for n in range(6)]
CALLS_EACH = 4
BOOK = PriceBook(version="dearer", credits_by_endpoint={"POST /v1/scanner/scan": 2})
DAY = (T0, T0 + timedelta(days=1))
LOG_GAP_EXIT = 6  # services/cli/base.py LOG_GAP


async def history(driver: Driver) -> None:
    await driver.commands(*(grant(a, 100, f"g-{a}") for a in ACCOUNTS))
    await driver.usage(
        *(usage(a, f"{a}-r{n}", occurred_at=at(n + 1)) for a in ACCOUNTS for n in range(CALLS_EACH))
    )
    await driver.settled()


async def fullest_usage_partition(settings: Settings) -> tuple[int, int]:
    ranges = await log_ranges(settings, [settings.usage_topic])
    tp, log = max(ranges.items(), key=lambda item: item[1].end)
    assert log.end >= 2
    return tp.partition, log.end


async def delete_records(settings: Settings, partition: int, before: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(settings.usage_topic, partition)
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=before)})
        assert low[tp] == before
    finally:
        await admin.close()


async def test_a_deleted_start_of_a_partition_is_refused_naming_the_range(
    driver: Driver, make_namespace: NamespaceFactory, tmp_path: Path
) -> None:
    await history(driver)
    settings = driver.settings
    # With the whole log, both answer.
    assert await log_gaps(settings, driver.pool, list(settings.input_topics)) == []
    rows = await reprice(settings, driver.pool, BOOK, *DAY)
    assert totals(rows.values()).calls == len(ACCOUNTS) * CALLS_EACH
    whole = await make_namespace()
    assert whole.database_url is not None
    assert (await replay(settings, whole.database_url)).equal

    partition, end = await fullest_usage_partition(settings)
    await delete_records(settings, partition, end - 1)  # retention: all but the last record
    named = f"{settings.usage_topic} partition {partition} offsets 0..{end - 2}"

    with pytest.raises(LogGapError) as refused:
        await reprice(settings, driver.pool, BOOK, *DAY)
    assert named in str(refused.value)
    assert f"{end - 1} records missing" in str(refused.value)
    assert "appended from" in str(refused.value)  # the records' time range: known here

    fresh = await make_namespace()
    assert fresh.database_url is not None
    with pytest.raises(LogGapError) as refused:
        await replay(settings, fresh.database_url)
    assert named in str(refused.value)
    assert await _entries(fresh.database_url) == 0  # refused before the writer read a record

    book = tmp_path / "book.json"
    book.write_text(json.dumps({"default_credits": 1, "prices": {"POST /v1/scanner/scan": 2}}))
    code, out, err = await _cli(
        settings, "reprice", "--price-book", str(book), "--from", DAY[0].isoformat(),
        "--to", DAY[1].isoformat(), "--output", str(tmp_path / "report.csv"),
    )  # fmt: skip
    assert (code, out) == (LOG_GAP_EXIT, ""), err
    assert named in err and "refused: reprice" in err
    assert not (tmp_path / "report.csv").exists()
    other = await make_namespace()
    code, out, err = await _cli(
        settings, "replay", "--target-database-url", str(other.database_url),
        "--manifest", str(tmp_path / "manifest.json"),
    )  # fmt: skip
    assert code == LOG_GAP_EXIT, err
    assert named in err and "refused: replay" in err
    assert not (tmp_path / "manifest.json").exists()


async def test_a_window_after_every_missing_record_is_still_answered(driver: Driver) -> None:
    await history(driver)
    settings = driver.settings
    partition, end = await fullest_usage_partition(settings)
    await delete_records(settings, partition, end)  # the whole partition: times unknown...
    with pytest.raises(LogGapError, match="no window can be answered"):
        await reprice(settings, driver.pool, BOOK, *DAY)

    # ...until a record follows the deleted ones there: then a window starting after it plus
    # the future skew can hold none of them. (A skew of 0 here, so the test need not wait.)
    no_skew = settings.model_copy(update={"max_future_skew_s": 0.0})
    soon = datetime.now(UTC) + timedelta(seconds=5)  # after their append time, within the skew
    await driver.usage(*(usage(a, f"{a}-soon", occurred_at=soon.isoformat()) for a in ACCOUNTS))
    await driver.settled()
    window = (soon, soon + timedelta(hours=1))
    rows = await reprice(no_skew, driver.pool, BOOK, *window)
    assert totals(rows.values()).calls == len(ACCOUNTS)
    with pytest.raises(LogGapError, match=f"partition {partition} offsets 0..{end - 1}"):
        await reprice(no_skew, driver.pool, BOOK, *DAY)  # the earlier window stays refused


async def test_a_topic_deleted_and_re_created_is_refused(
    namespace: Settings, make_namespace: NamespaceFactory
) -> None:
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        await history(driver)
    ranges = await log_ranges(namespace, [namespace.usage_topic])
    ends = {tp.partition: log.end for tp, log in ranges.items()}
    await _recreate(namespace, namespace.usage_topic)

    async with _pool(namespace) as pool:
        # The writer's stored offsets are beyond the new, empty log's end.
        with pytest.raises(LogGapError) as refused:
            await reprice(namespace, pool, BOOK, *DAY)
        for partition, end in ends.items():
            if end:
                assert f"partition {partition} offsets 0..{end - 1}" in str(refused.value)
        assert "re-created" in str(refused.value)
        fresh = await make_namespace()
        assert fresh.database_url is not None
        with pytest.raises(LogGapError, match="re-created"):
            await replay(namespace, fresh.database_url)

        # A writer that resumed the new incarnation from its beginning stores its offsets:
        # the ids the ledger applied still outnumber the records the log holds.
        await pool.execute(
            "UPDATE kafka_offsets SET next_offset = 0 WHERE consumer = $1 AND topic = $2",
            namespace.consumer_group,
            namespace.usage_topic,
        )
        with pytest.raises(LogGapError) as refused:
            await reprice(namespace, pool, BOOK, *DAY)
        calls = len(ACCOUNTS) * CALLS_EACH
        assert f"{namespace.usage_topic} (offsets unknown): {calls} records missing" in str(
            refused.value
        )
        assert f"applied {calls} ids (processed_requests) but the log holds 0" in str(refused.value)


async def test_charged_calls_missing_from_the_log_are_refused_whatever_the_offsets_say(
    namespace: Settings,
) -> None:
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        await history(driver)
        partition, end = await fullest_usage_partition(namespace)
        records = await read_topic(namespace, namespace.usage_topic, len(ACCOUNTS) * CALLS_EACH)
        await delete_records(namespace, partition, end)
        # Redeliveries of calls the log still holds make up the count (they change nothing)...
        kept = [(r.key.decode(), r.value) for r in records if r.partition != partition] * 2
        assert len(kept) >= end
        await driver.usage(*kept)
        await driver.settled()
    async with _pool(namespace) as pool:
        # ...and the writer's offsets are gone (a consumer group renamed): neither shows a gap.
        await pool.execute(
            "DELETE FROM kafka_offsets WHERE consumer = $1", namespace.consumer_group
        )
        assert await log_gaps(namespace, pool, [namespace.usage_topic]) == []
        with pytest.raises(LogGapError) as refused:
            await reprice(namespace, pool, BOOK, *DAY)
        message = str(refused.value)
        assert f"{end} calls the ledger charged in the window" in message
        assert f"are not in {namespace.usage_topic}" in message
        assert f"occurred {at(1).replace('+00:00', 'Z')}.." in message
        # A window none of them occurred in is answered.
        later = (T0 + timedelta(days=1), T0 + timedelta(days=2))
        assert totals((await reprice(namespace, pool, BOOK, *later)).values()).calls == 0


async def _recreate(settings: Settings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])

        async def gone() -> bool:
            return topic not in set(await admin.list_topics())

        await wait_until(gone, f"{topic} to be deleted")
    finally:
        await admin.close()
    await ensure_topics(settings)

    async def back() -> bool:
        return len(await log_ranges(settings, [topic])) == settings.topic_partitions

    await wait_until(back, f"{topic} to be re-created")


class _pool:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url is not None
        self.url = settings.database_url

    async def __aenter__(self) -> asyncpg.Pool:
        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=2)
        assert self.pool is not None
        return self.pool

    async def __aexit__(self, *_: object) -> None:
        await self.pool.close()


async def _entries(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
    finally:
        await conn.close()


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "CREDITLEDGER_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "CREDITLEDGER_DATABASE_URL": str(settings.database_url),
        "CREDITLEDGER_ADMIN_TOKEN": str(settings.admin_token),
        "CREDITLEDGER_USAGE_TOPIC": settings.usage_topic,
        "CREDITLEDGER_COMMANDS_TOPIC": settings.commands_topic,
        "CREDITLEDGER_LEDGER_TOPIC": settings.ledger_topic,
        "CREDITLEDGER_ALERTS_TOPIC": settings.alerts_topic,
        "CREDITLEDGER_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CREDITLEDGER_CONSUMER_GROUP": settings.consumer_group,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
