"""A steady load at a fixed rate, and freshness under it: per sampled event, produce → visible
where `/v1/credits/balance` and `/check` read it (the writer's committed account state,
`writer_accounts`: one statement of the API's reads/balance.py), and, as a second figure, →
the projector's balance model (`balance_view`, a hop further: relay, ledger topic, projector)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from services.bench.reads import percentile
from services.bench.workload import Tally, account_id, usage_message
from services.platform.record_batches import RecordBatches
from services.platform.settings import Settings
from services.writer.plan import home_partition

TICK_S = 0.01
POLL_S = 0.005
SAMPLES_PER_S = 100  # events per second whose visibility we time
ACK_WINDOW = 10_000  # sends whose acks we collect before waiting for them: bounds memory
SEQS = "SELECT account_id, seq FROM writer_accounts"
# Where each figure's samples become visible: the row the API's balance and check read, and
# the projector's model of the same account.
VISIBLE = {
    "api": "SELECT account_id, seq AS last_seq FROM writer_accounts WHERE account_id = ANY($1)",
    "projection": "SELECT account_id, last_seq FROM balance_view WHERE account_id = ANY($1)",
}


@dataclass(frozen=True)
class Freshness:
    target_per_s: float
    achieved_per_s: float
    sent: int
    samples: int
    unseen: int  # sampled events not visible to the API by the deadline
    p50_ms: float
    p99_ms: float
    max_ms: float
    projection_unseen: int  # ... not yet in balance_view by the deadline
    projection_p50_ms: float
    projection_p99_ms: float


class SteadyLoad:
    """Produces `rate` events/s until `stop` is set (or `max_seconds`); for the first
    `sample_seconds`, every k-th event's account is polled (every 5 ms) on what the API reads
    and on balance_view until each reaches the event's seq: latency = visible − send.
    `sampled` is set when that window is over and its samples are seen (or the settle deadline
    passed), so the caller can measure something else under the same load without that work
    delaying the samples still outstanding (on two cores, reads' CPU would otherwise show up as
    freshness)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        pool: asyncpg.Pool,
        settings: Settings,
        tally: Tally,
        accounts: int,
        rate: float,
        sample_seconds: float,
        max_seconds: float,
        settle_deadline_s: float = 60.0,
        request_prefix: str = "steady",
    ) -> None:
        self.producer, self.pool, self.settings, self.tally = producer, pool, settings, tally
        self.accounts, self.rate = accounts, rate
        self.sample_seconds, self.max_seconds = sample_seconds, max_seconds
        self.settle_deadline_s = settle_deadline_s
        # Each load of a run needs ids of its own: the writer drops a request id it has seen.
        self.request_prefix = request_prefix
        self.sampled = asyncio.Event()
        self.stop = asyncio.Event()
        self.outstanding: dict[str, dict[str, deque[tuple[int, float]]]] = {
            where: {} for where in VISIBLE
        }
        self.latencies: dict[str, list[float]] = {where: [] for where in VISIBLE}
        self.sampling = True

    async def run(self) -> Freshness:
        seqs = {r["account_id"]: int(r["seq"]) for r in await self.pool.fetch(SEQS)}
        every = max(1, int(self.rate // SAMPLES_PER_S))
        poller = asyncio.create_task(self._poll())
        acks: list[asyncio.Future[object]] = []
        sent = 0
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now - started >= self.max_seconds:
                    break
                if self.sampling and now - started >= self.sample_seconds:
                    self.sampling = False  # the poller sets `sampled` once the samples are seen
                due = int(self.rate * (now - started)) - sent
                batches = _TickBatches(self.producer, self.settings)
                for _ in range(max(0, due)):
                    account = account_id(sent % self.accounts)
                    key, value = usage_message(account, f"{self.request_prefix}-{sent}")
                    await batches.add(account, key, value)
                    seqs[account] = seq = seqs.get(account, 0) + 1
                    self.tally.used[account] += 1
                    if self.sampling and sent % every == 0:
                        # Before the record is handed over: its latency includes ours.
                        sent_at = time.monotonic()
                        for outstanding in self.outstanding.values():
                            outstanding.setdefault(account, deque()).append((seq, sent_at))
                    sent += 1
                acks.extend(await batches.send())
                if len(acks) >= ACK_WINDOW:
                    await asyncio.gather(*acks)
                    acks.clear()
                await asyncio.sleep(TICK_S)
            elapsed = time.monotonic() - started
            await asyncio.wait_for(asyncio.gather(*acks), self.settle_deadline_s)
            self.tally.records += sent
        finally:
            self.sampling = False
            self.sampled.set()
            await asyncio.wait_for(poller, self.settle_deadline_s + 5)
        latencies, projected = self.latencies["api"], self.latencies["projection"]
        return Freshness(
            target_per_s=self.rate,
            achieved_per_s=sent / elapsed,
            sent=sent,
            samples=len(latencies),
            unseen=sum(len(q) for q in self.outstanding["api"].values()),
            p50_ms=statistics.median(latencies) if latencies else 0.0,
            p99_ms=percentile(latencies, 0.99),
            max_ms=max(latencies, default=0.0),
            projection_unseen=sum(len(q) for q in self.outstanding["projection"].values()),
            projection_p50_ms=statistics.median(projected) if projected else 0.0,
            projection_p99_ms=percentile(projected, 0.99),
        )

    async def _poll(self) -> None:
        """Until the window is over and every sample is seen (or the settle deadline)."""
        try:
            await self._poll_samples()
        finally:
            self.sampled.set()

    async def _poll_samples(self) -> None:
        deadline = float("inf")
        # One connection for the whole window: a pool's acquire and release per poll sent four
        # reset statements each time (up to 1,600 a second at two polls every 5 ms), Postgres CPU
        # taken from the pipeline being measured.
        async with self.pool.acquire() as conn:
            while self.sampling or any(self.outstanding.values()):
                if not self.sampling and deadline == float("inf"):
                    deadline = time.monotonic() + self.settle_deadline_s
                if time.monotonic() > deadline:
                    return
                for where, outstanding in self.outstanding.items():
                    if outstanding:
                        await self._poll_once(conn, where, outstanding)
                await asyncio.sleep(POLL_S)

    async def _poll_once(
        self,
        conn: asyncpg.pool.PoolConnectionProxy,
        where: str,
        outstanding: dict[str, deque[tuple[int, float]]],
    ) -> None:
        rows = await conn.fetch(VISIBLE[where], list(outstanding))
        now = time.monotonic()
        for row in rows:
            queue = outstanding.get(row["account_id"])
            while queue and queue[0][0] <= row["last_seq"]:
                self.latencies[where].append((now - queue.popleft()[1]) * 1000)
            if queue is not None and not queue:
                del outstanding[row["account_id"]]


class _TickBatches:
    """One tick's records, one record batch per partition (`RecordBatches`), handed to the
    producer together.

    `producer.send` per record (a future, a partitioner hash and an accumulator append each)
    cost the bench 0.26-0.28 cores at 3,000 events/s, this 0.145 (BENCHMARKS.md, third round):
    CPU the pipeline it measures did not get. The partition is the one the default partitioner
    gives the key (`home_partition`, as the writer and the admin API compute it), so every
    record lands where `send` would have put it."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.batches = RecordBatches(producer)
        self.topic, self.partitions = settings.usage_topic, settings.topic_partitions

    async def add(self, account: str, key: bytes, value: bytes) -> None:
        partition = home_partition(account, self.partitions)
        await self.batches.add(self.topic, partition, key, value)

    async def send(self) -> list[asyncio.Future[Any]]:
        return await self.batches.submit_all()
