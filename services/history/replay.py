"""`creditledger replay`: the ledger rebuilt from the Kafka input topics into a fresh database,
compared with the live one, with a manifest that lets anyone reproduce the result.

The writer (publishing nothing, no expiry scheduler: the log already holds every `expire` that
was sent) consumes both input topics from the earliest offsets, under a consumer group of its
own, up to the end offsets read at the start (or pinned ones). Each account's replayed entries
are then compared with the live ones over the seq range both hold, by a checksum of every column.

The price book is part of the input: the manifest carries every version (`price_book`), and
they are written to the fresh database before the writer reads a record, so the replay prices
every call as the live writer did. They are read after the end offsets: a version committed
later starts after every record up to those offsets could have occurred (it can't start sooner
than `max_future_skew_s` ahead, and records stamped further ahead of the log were refused).

A replay of a log that lost records the live ledger applied (retention, `delete_records`, a
topic deleted and re-created) could only differ, or worse agree over what is left: it is
refused first (`LogGapError`, naming topic, partition and offsets; `coverage.py`), before the
target database is touched. So is a pinned replay whose end offsets the log no longer reaches.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import asyncpg
from aiokafka.structs import TopicPartition

from schemas.price_book import copy_versions, load_versions, version_json
from services.core.pricing import PriceVersion
from services.history.coverage import LogGapError, log_gaps
from services.platform.kafka import new_admin, new_producer, new_reader
from services.platform.postgres import create_pool, migrate
from services.platform.settings import Settings
from services.writer.runner import LedgerWriter

CATCH_UP_DEADLINE_S = 3600.0
ACCOUNT_CHECKSUMS = """
SELECT account_id, max(seq) AS last_seq,
       md5(string_agg(concat_ws('|', seq, entry_id, delta, balance_after, reason, source,
                                bucket_grant_id, bucket_kind, bucket_expires_at, bucket_terms,
                                metadata, reserved_delta, occurred_at, recorded_at),
                      E'\\n' ORDER BY seq)) AS checksum
FROM ledger_entries WHERE seq <= coalesce(($1::jsonb ->> account_id)::bigint, seq)
GROUP BY account_id
"""
CONSUMED = "SELECT topic, kafka_partition, next_offset FROM kafka_offsets WHERE consumer = $1"

Offsets = dict[str, dict[int, int]]  # topic -> partition -> offset


@dataclass
class ReplayManifest:
    created_at: str
    code_version: str
    input_topics: list[str]
    end_offsets: Offsets
    consumer_group: str
    accounts: int = 0
    entries: int = 0
    seconds: float = 0.0
    ledger_sha256: str = ""
    equal: bool = False
    differing_accounts: list[str] = field(default_factory=list)
    price_book: list[dict[str, Any]] = field(default_factory=list)  # every version, oldest first

    def to_json(self) -> dict[str, object]:
        return asdict(self)


async def end_offsets(settings: Settings) -> Offsets:
    """The input topics' end offsets now: where the replay stops."""
    admin = new_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(list(settings.input_topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]
    consumer = new_reader(settings)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    offsets: Offsets = {}
    for tp, offset in ends.items():
        offsets.setdefault(tp.topic, {})[tp.partition] = offset
    return offsets


async def replay(
    live: Settings,
    target_database_url: str,
    pinned: Offsets | None = None,
    price_versions: Sequence[PriceVersion] | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,  # input records applied
) -> ReplayManifest:
    """Replay into `target_database_url`; `pinned` end offsets and `price_versions` (both from
    an earlier manifest) reproduce that replay, else the log's end and the live price book.
    Raises `LogGapError` when the log lacks records the live ledger (or `pinned`) covers."""
    assert live.database_url is not None and live.kafka_bootstrap is not None
    await refuse_gaps(live, pinned)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    settings = live.model_copy(
        update={"database_url": target_database_url, "consumer_group": f"replay-{stamp}"}
    )
    manifest = ReplayManifest(
        created_at=datetime.now(UTC).isoformat(),
        code_version=version("creditledger"),
        input_topics=list(live.input_topics),
        end_offsets=pinned or await end_offsets(live),
        consumer_group=settings.consumer_group,
    )
    if price_versions is None:
        price_versions = await _live_versions(live.database_url)
    manifest.price_book = [version_json(v) for v in sorted(price_versions, key=_number)]
    await migrate(target_database_url)
    await _copy_price_book(target_database_url, price_versions)
    await _run_writer_until(settings, manifest.end_offsets, progress)
    manifest.seconds = time.monotonic() - started
    await _compare(live.database_url, target_database_url, manifest)
    return manifest


async def refuse_gaps(live: Settings, pinned: Offsets | None = None) -> None:
    """Raise `LogGapError` when the input topics lack records the live ledger applied."""
    assert live.database_url is not None
    pool = await create_pool(live.database_url, max_size=1)
    try:
        gaps = await log_gaps(live, pool, list(live.input_topics), pinned)
    finally:
        await pool.close()
    if gaps:
        raise LogGapError("replay", gaps)


async def _live_versions(database_url: str) -> tuple[PriceVersion, ...]:
    pool = await create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await load_versions(conn)
    finally:
        await pool.close()


async def _copy_price_book(database_url: str, versions: Sequence[PriceVersion]) -> None:
    pool = await create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            held = await load_versions(conn)
            if held and sorted(held, key=_number) != sorted(versions, key=_number):
                raise RuntimeError("the replay's target database holds another price book")
            if not held:
                await copy_versions(conn, versions)
    finally:
        await pool.close()


def _number(version: PriceVersion) -> int:
    return version.version


async def _run_writer_until(
    settings: Settings, ends: Offsets, progress: Callable[[int, int], None]
) -> None:
    assert settings.database_url is not None and settings.kafka_bootstrap is not None
    pool = await create_pool(settings.database_url)
    producer = new_producer(settings)  # idle: the writer publishes nothing
    await producer.start()
    stop = asyncio.Event()
    writer = LedgerWriter(settings, pool, producer, publish=False)
    task = asyncio.create_task(writer.run(stop))
    try:
        deadline = time.monotonic() + CATCH_UP_DEADLINE_S
        while not await _reached(pool, settings.consumer_group, ends, progress):
            if task.done():
                task.result()  # the writer died: raise its error
            assert time.monotonic() < deadline, "replay did not reach the end offsets in time"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await producer.stop()
        await pool.close()


async def _reached(
    pool: asyncpg.Pool,
    group: str,
    ends: Offsets,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> bool:
    consumed = {
        (r["topic"], r["kafka_partition"]): r["next_offset"]
        for r in await pool.fetch(CONSUMED, group)
    }
    pairs = [
        (consumed.get((topic, partition), 0), end)
        for topic, partitions in ends.items()
        for partition, end in partitions.items()
        if end > 0
    ]
    progress(sum(min(at, end) for at, end in pairs), sum(end for _, end in pairs))
    return all(at >= end for at, end in pairs)


async def _compare(live_url: str, target_url: str, manifest: ReplayManifest) -> None:
    replayed = await _checksums(target_url, None)
    last_seqs = {account: seq for account, (seq, _) in replayed.items()}
    live = await _checksums(live_url, last_seqs)
    manifest.accounts = len(replayed)
    manifest.entries = sum(seq for seq, _ in replayed.values())
    digest = hashlib.sha256()
    for account in sorted(replayed):
        digest.update(f"{account}:{replayed[account][1]}\n".encode())
    manifest.ledger_sha256 = digest.hexdigest()
    manifest.differing_accounts = sorted(
        a for a in replayed.keys() | live.keys() if replayed.get(a) != live.get(a)
    )
    manifest.equal = not manifest.differing_accounts


async def _checksums(url: str, up_to: dict[str, int] | None) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        import json

        rows = await conn.fetch(ACCOUNT_CHECKSUMS, json.dumps(up_to) if up_to else None)
    finally:
        await conn.close()
    return {r["account_id"]: (r["last_seq"], r["checksum"]) for r in rows}
