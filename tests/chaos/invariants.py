"""I1–I5, checked against the oracle's expectations once the pipeline has settled.

I1 no loss: each published request and command is applied exactly once, each record meant to
   die is a dead letter with its code, and nothing else is (no extra ids, no extra dead letters).
I2 no double count: each request's entries net to exactly what the oracle says.
I3 conservation: per account, sum of deltas = writer balance = view balance = the oracle's;
   reserved = sum of reserved deltas; buckets >= 0 (available = balance - reserved as served
   by the API is the poller's check); no account
   below its credit limit (0: chaos rounds set none).
I4 stored offsets: the writer's and projector's offsets in Postgres are the topics' end offsets.
I5 projections equal a fresh fold of the ledger (`projections.audit`).
(I6 and I7 are the API poller's, in poller.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from projections.audit import audit
from services.platform.settings import Settings
from tests.chaos.oracle import Expectations

SETTLE_POLL_S = 0.1


@dataclass(frozen=True)
class Verdict:
    invariant: str  # "I1" ...
    held: bool
    detail: str = ""


async def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)
        ]
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def stored_offsets(pool: asyncpg.Pool, consumer: str) -> dict[tuple[str, int], int]:
    rows = await pool.fetch(
        "SELECT topic, kafka_partition, next_offset FROM kafka_offsets WHERE consumer = $1",
        consumer,
    )
    return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}


async def offsets_behind(pool: asyncpg.Pool, settings: Settings) -> list[str]:
    """Where a consumer's stored offset is short of (or past) its topic's end: I4's evidence."""
    wanted = {
        settings.consumer_group: [settings.usage_topic, settings.commands_topic],
        settings.projector_group: [settings.ledger_topic],
    }
    gaps = []
    for consumer, topics in wanted.items():
        ends = await end_offsets(settings, topics)
        stored = await stored_offsets(pool, consumer)
        for address, end in sorted(ends.items()):
            if stored.get(address, 0) != end:
                gaps.append(f"{consumer} {address}: stored {stored.get(address, 0)}, end {end}")
    return gaps


async def in_flight(pool: asyncpg.Pool, settings: Settings) -> int:
    """Input records in Kafka the writer has not committed yet."""
    ends = await end_offsets(settings, [settings.usage_topic, settings.commands_topic])
    stored = await stored_offsets(pool, settings.consumer_group)
    return sum(end - stored.get(address, 0) for address, end in ends.items())


VIEWS_BEHIND = """SELECT count(*) FROM writer_accounts w LEFT JOIN balance_view b
USING (account_id) WHERE w.seq <> coalesce(b.last_seq, 0)"""


async def settle_views(pool: asyncpg.Pool, deadline_s: float) -> int:
    """Wait until every balance view is at its account's writer seq; return how many are not."""
    deadline = time.monotonic() + deadline_s
    while True:
        lagging = int(await pool.fetchval(VIEWS_BEHIND))
        if not lagging or time.monotonic() > deadline:
            return lagging
        await asyncio.sleep(SETTLE_POLL_S)


async def settle(pool: asyncpg.Pool, settings: Settings, deadline_s: float) -> list[str]:
    """Wait until writer, outbox and projector are done; return what is still behind if not."""
    deadline = time.monotonic() + deadline_s
    while True:
        behind = await offsets_behind(pool, settings)
        if not behind:
            outbox = await pool.fetchval("SELECT count(*) FROM outbox")
            lagging = await pool.fetchval(VIEWS_BEHIND)
            behind = [f"outbox rows: {outbox}"] if outbox else []
            behind += [f"balance views behind the writer: {lagging}"] if lagging else []
            if not behind:
                return []
        if time.monotonic() > deadline:
            return behind
        await asyncio.sleep(SETTLE_POLL_S)


async def check(pool: asyncpg.Pool, settings: Settings, expect: Expectations) -> list[Verdict]:
    return [
        await _no_loss(pool, expect),
        await _no_double_count(pool, expect),
        await _conservation(pool, expect),
        await _offsets(pool, settings),
        await check_projections(pool),
    ]


async def _no_loss(pool: asyncpg.Pool, expect: Expectations) -> Verdict:
    requests = {
        (r["account_id"], r["request_id"])
        for r in await pool.fetch("SELECT account_id, request_id FROM processed_requests")
    }
    commands = {
        (r["account_id"], r["command_id"]): r["status"]
        for r in await pool.fetch("SELECT account_id, command_id, status FROM processed_commands")
    }
    dead = {
        (r["topic"], r["kafka_partition"], r["kafka_offset"]): r["error_code"]
        for r in await pool.fetch(
            "SELECT topic, kafka_partition, kafka_offset, error_code FROM dead_letters"
        )
    }
    problems = _set_diff("requests", set(expect.requests), requests)
    problems += _set_diff("commands", set(expect.commands), set(commands))
    wrong_status = {k: s for k, s in expect.commands.items() if commands.get(k, s) != s}
    problems += [f"commands with another status: {_few(wrong_status)}"] if wrong_status else []
    problems += _set_diff("dead letters", set(expect.dead), set(dead))
    wrong_code = {a: (c, dead[a]) for a, c in expect.dead.items() if dead.get(a, c) != c}
    problems += [f"dead letters with another code: {_few(wrong_code)}"] if wrong_code else []
    return Verdict("I1", not problems, "; ".join(problems))


async def _no_double_count(pool: asyncpg.Pool, expect: Expectations) -> Verdict:
    rows = await pool.fetch(
        """SELECT account_id, split_part(source, ':', 2) AS request_id, sum(delta)::bigint AS net
           FROM ledger_entries WHERE source LIKE 'request:%' OR source LIKE 'refund:%'
           GROUP BY 1, 2"""
    )
    nets = {(r["account_id"], r["request_id"]): r["net"] for r in rows}
    wrong = {
        key: (want, nets.get(key, 0))
        for key, (_, want) in expect.requests.items()
        if nets.get(key, 0) != want
    }
    duplicate_entries = await pool.fetchval(
        "SELECT count(*) - count(DISTINCT entry_id) FROM ledger_entries"
    )
    detail = f"requests netting otherwise (want, have): {_few(wrong)}" if wrong else ""
    if duplicate_entries:
        detail += f" entry ids repeated: {duplicate_entries}"
    return Verdict("I2", not wrong and not duplicate_entries, detail)


CONSERVATION = """
SELECT w.account_id, w.balance AS writer_balance,
       coalesce(l.total, 0) AS ledger_total, coalesce(l.reserved, 0) AS ledger_reserved,
       b.balance AS view_balance, b.reserved AS view_reserved,
       coalesce(g.negative_buckets, 0) AS negative_buckets
FROM writer_accounts w
LEFT JOIN (SELECT account_id, sum(delta)::bigint AS total,
                  sum(reserved_delta)::bigint AS reserved
           FROM ledger_entries GROUP BY 1) l USING (account_id)
LEFT JOIN balance_view b USING (account_id)
LEFT JOIN (SELECT account_id, count(*) AS negative_buckets FROM grants_view
           WHERE remaining < 0 GROUP BY 1) g USING (account_id)
"""


async def _conservation(pool: asyncpg.Pool, expect: Expectations) -> Verdict:
    problems = []
    seen = set()
    for row in await pool.fetch(CONSERVATION):
        account = row["account_id"]
        seen.add(account)
        want = expect.balance.get(account, 0)
        balances = (row["ledger_total"], row["writer_balance"], row["view_balance"], want)
        if len(set(balances)) != 1:
            problems.append(f"{account}: ledger, writer, view, oracle = {balances}")
        if row["view_reserved"] != row["ledger_reserved"]:
            problems.append(f"{account}: reserved {row['view_reserved']} vs ledger")
        if row["negative_buckets"] or row["ledger_total"] < 0:
            problems.append(f"{account}: below zero (buckets {row['negative_buckets']})")
    missing = {a for a, b in expect.balance.items() if b and a not in seen}
    problems += [f"accounts never written: {sorted(missing)[:5]}"] if missing else []
    return Verdict("I3", not problems, "; ".join(problems[:5]))


async def _offsets(pool: asyncpg.Pool, settings: Settings) -> Verdict:
    behind = await offsets_behind(pool, settings)
    return Verdict("I4", not behind, "; ".join(behind[:5]))


async def check_projections(pool: asyncpg.Pool) -> Verdict:
    report = await audit(pool)
    detail = "; ".join(f"{d.account_id} {d.model}: {d.detail}" for d in report.drifts[:5])
    return Verdict("I5", not report.drifts, detail)


def _set_diff(what: str, want: Collection[Any], have: Collection[Any]) -> list[str]:
    want, have = set(want), set(have)
    missing, extra = want - have, have - want
    found = [f"{what} missing: {_few(missing)}"] if missing else []
    return found + ([f"{what} not published: {_few(extra)}"] if extra else [])


def _few(items: Collection[Any] | dict[Any, Any], limit: int = 3) -> str:
    listed = list(items.items() if isinstance(items, dict) else items)
    return f"{len(listed)}, e.g. {listed[:limit]}"
