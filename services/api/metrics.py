"""Prometheus metrics: HTTP traffic measured by a middleware, ledger state read at scrape.

`install_metrics(app)` (called by `create_app`) adds the middleware and the app's registry; the
`GET /metrics` route renders that registry plus the gauges computed at scrape from Postgres:
projection lag per model, dead letters, ledger entries and accounts, estimated table rows,
the writer's consumed offsets, and Kafka consumer lag for every partition of the consumed topics
(`creditledger_consumer_lag_records{consumer="writer"|"projector",topic,partition}` = the
partition's end offset minus where the consumer resumes: its next offset stored in Postgres, or
the log start when it stored none (both consumers start a partition at its beginning) or when
retention deleted what it stored). The scrape queries
run under a statement timeout, so a slow database makes the scrape report
`creditledger_scrape_ok 0`, never hang.

Partitions come from the app producer's metadata, log start and end offsets from a short-lived
`AIOKafkaConsumer` (`beginning_offsets`, `end_offsets`; no group); all are cached for
`END_OFFSETS_TTL_S` with at most one refresh in flight; a scrape waits for it at most
`END_OFFSETS_WAIT_S`, and otherwise exports no lag and counts
`creditledger_scrape_errors_total{source="kafka"}` (the refresh itself gives up after
`END_OFFSETS_FETCH_TIMEOUT_S`).

Labels are bounded: `route` is the route template (`/v1/admin/accounts/{account_id}/grants`),
never the raw path; requests that match no route share the label `<unmatched>`.

The process's registry (services/platform/metrics.py: `process_*` and `python_*` figures, the
writer's counters `creditledger_writer_*_total` and `creditledger_misrouted_records_total` when
this process runs the writer, the consumers' offset counters) follows the HTTP metrics. With
several API workers (prometheus_client's multiprocess mode) the counters are every worker's,
added up, and `process_*` describe the worker that answered the scrape.

Naming (Prometheus's conventions): counters end `_total` (a running total read from Postgres is
exported as a counter too: `creditledger_ledger_entries_total`, `creditledger_dead_letters_total`),
units are in the names (`_seconds`, `_records`, `_rows`), and no `_created` series. No scrape
counts a table that grows with traffic: the ledger's size is the sum of the per-account last
seqs (a row per account), the idempotency tables' sizes are Postgres's estimate
(`pg_class.reltuples`, kept by autovacuum), and the exact rates of accepted usage events and
commands are the writer's counters.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.lag import projection_lag
from services.api.request_id import request_id_from
from services.platform import metrics as process_metrics
from services.platform.kafka import new_reader
from services.platform.logs import REQUEST_ID, access_line
from services.platform.settings import Settings

SCRAPE_STATEMENT_TIMEOUT_MS = 3000
END_OFFSETS_TTL_S = 5.0
END_OFFSETS_WAIT_S = 2.0
END_OFFSETS_FETCH_TIMEOUT_S = 10.0
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class HttpMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    rate_limited: Counter
    scrape_errors: Counter


def new_http_metrics() -> HttpMetrics:
    registry = CollectorRegistry(auto_describe=True)
    return HttpMetrics(
        registry=registry,
        requests=Counter(
            "creditledger_http_requests", "HTTP requests answered",
            ("method", "route", "status"), registry=registry,
        ),
        latency=Histogram(
            "creditledger_http_request_duration_seconds", "HTTP request latency",
            ("method", "route"), buckets=LATENCY_BUCKETS_S, registry=registry,
        ),
        rate_limited=Counter(
            "creditledger_http_rate_limited", "Requests refused with 429", ("limit",),
            registry=registry,
        ),
        scrape_errors=Counter(
            "creditledger_scrape_errors", "Scrape-time reads that failed or timed out",
            ("source",), registry=registry,
        ),
    )  # fmt: skip


class RequestRecords:
    """What every answered HTTP request leaves: its count and latency by route template, and
    its access log line (shared by `MetricsMiddleware` and the fast reads, which answer ahead
    of it: services/api/fastreads.py)."""

    def __init__(self, metrics: HttpMetrics, access: bool = True) -> None:
        self.metrics, self.access = metrics, access
        # The labelled children, looked up once per label set (labels are bounded, see above).
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    def record(self, scope: Scope, rid: str, status: int, elapsed_s: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "<unmatched>"
        method = scope.get("method", "")
        self._count(method, route, status).inc()
        self._time(method, route).observe(elapsed_s)
        if self.access:
            _log_access(scope, rid, method, route, status, elapsed_s)

    def _count(self, method: str, route: str, status: int) -> Counter:
        found = self._counted.get((method, route, status))
        if found is None:
            found = self.metrics.requests.labels(method, route, str(status))
            self._counted[(method, route, status)] = found
        return found

    def _time(self, method: str, route: str) -> Histogram:
        found = self._timed.get((method, route))
        if found is None:
            found = self._timed[(method, route)] = self.metrics.latency.labels(method, route)
        return found


class MetricsMiddleware:
    """Pure ASGI (no body buffering): counts and times every HTTP request by route template,
    gives it a request id (answered as `X-Request-Id`, and in every line logged while it is
    answered: `logs.REQUEST_ID`) and writes one access log line for it."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, access: bool = True) -> None:
        self.app, self.metrics = app, metrics
        self.records = RequestRecords(metrics, access)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id
        echoed = (b"x-request-id", rid.encode())

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        bound = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            REQUEST_ID.reset(bound)
            self.records.record(scope, rid, status, time.perf_counter() - started)


def _log_access(
    scope: Scope, rid: str, method: str, route: str, status: int, elapsed_s: float
) -> None:
    client = scope.get("client")
    access_line({
        "method": method, "path": scope.get("path", ""), "route": route, "status": status,
        "duration_ms": round(elapsed_s * 1000, 3), "client": client[0] if client else None,
        "request_id": rid,
    })  # fmt: skip


def install_metrics(app: FastAPI) -> None:
    """Measure the app's HTTP traffic; call before the app starts (in create_app)."""
    metrics = new_http_metrics()
    app.state.metrics = metrics
    app.state.rate_limited_counter = metrics.rate_limited
    settings: Settings = app.state.settings
    app.add_middleware(MetricsMiddleware, metrics=metrics, access=settings.access_log)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


DEAD_LETTERS = "SELECT topic, error_code, count(*) AS n FROM dead_letters GROUP BY 1, 2"
# Seqs are per account without gaps: the sum of the last seqs is the number of entries.
LEDGER = """
SELECT count(*) AS accounts, coalesce(sum(seq), 0)::bigint AS entries FROM writer_accounts
"""
# Postgres's estimate (kept by autovacuum/ANALYZE; -1 before the first): no scan per scrape.
TABLE_ROWS = """
SELECT c.relname AS name, greatest(c.reltuples, 0)::bigint AS n
FROM pg_class c WHERE c.oid IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
ORDER BY 1
"""
ESTIMATED_TABLES = ("ledger_entries", "processed_requests", "processed_commands", "outbox")
OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets WHERE consumer = $1
ORDER BY topic, kafka_partition
"""
# (topic, partition) -> (log start offset, log end offset)
LogBounds = dict[tuple[str, int], tuple[int, int]]


@dataclass
class EndOffsetsCache:
    """Log bounds of the consumed topics, refreshed at most every `END_OFFSETS_TTL_S`."""

    settings: Settings  # where Kafka is and how to talk to it
    topics: tuple[str, ...]
    producer: AIOKafkaProducer  # the app's: its metadata names each topic's partitions
    fetched_at: float = float("-inf")
    offsets: LogBounds = field(default_factory=dict)
    refresh: asyncio.Task[LogBounds] | None = None

    async def get(self) -> LogBounds | None:
        """Fresh-enough log bounds, or None when Kafka did not answer in time."""
        if time.monotonic() - self.fetched_at < END_OFFSETS_TTL_S:
            return self.offsets
        if self.refresh is None or self.refresh.done():
            if self.refresh is not None and not self.refresh.cancelled():
                self.refresh.exception()  # retrieved: a failed refresh is not logged as lost
            self.refresh = asyncio.create_task(self._fetch())
        done, _ = await asyncio.wait({self.refresh}, timeout=END_OFFSETS_WAIT_S)
        if not done or self.refresh.cancelled() or self.refresh.exception() is not None:
            return None
        self.offsets, self.fetched_at = self.refresh.result(), time.monotonic()
        return self.offsets

    async def _fetch(self) -> LogBounds:
        consumer = new_reader(
            self.settings, enable_auto_commit=False, isolation_level="read_committed",
            request_timeout_ms=5000,
        )  # fmt: skip
        try:
            async with asyncio.timeout(END_OFFSETS_FETCH_TIMEOUT_S):
                partitions = [
                    TopicPartition(topic, p)
                    for topic in self.topics
                    for p in sorted(await self.producer.partitions_for(topic))
                ]
                await consumer.start()
                starts = await consumer.beginning_offsets(partitions) if partitions else {}
                ends = await consumer.end_offsets(partitions) if partitions else {}
            return {(tp.topic, tp.partition): (starts[tp], end) for tp, end in ends.items()}
        finally:
            await _stop_quietly(consumer)


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a group-less consumer. aiokafka's stop can raise CancelledError of its own (its
    no-group coordinator awaits a task it cancelled): swallowed unless this task is cancelled."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except (KafkaError, OSError):
        pass


def _end_offsets_cache(app: FastAPI) -> EndOffsetsCache | None:
    settings: Settings = app.state.settings
    if not settings.kafka_bootstrap:
        return None
    cache: EndOffsetsCache | None = getattr(app.state, "end_offsets_cache", None)
    if cache is None:
        topics = (*settings.input_topics, settings.ledger_topic)
        cache = EndOffsetsCache(settings, topics, app.state.producer)
        app.state.end_offsets_cache = cache
    return cache


def consumer_lag_family(
    bounds: LogBounds, settings: Settings, stored: dict[str, list[asyncpg.Record]]
) -> Metric:
    """Lag for every partition of each consumer's topics, stored offset or not: a partition it
    never stored an offset for (or only one retention has deleted since) it reads from the log
    start, so its lag is the records from there to the end."""
    lag = GaugeMetricFamily(
        "creditledger_consumer_lag_records",
        "Records on Kafka a consumer has not processed yet (log end offset - where it resumes:"
        " its stored next offset, or the log start)",
        labels=["consumer", "topic", "partition"],
    )
    consumed = {
        "writer": (settings.input_topics, stored.get("writer", [])),
        "projector": ((settings.ledger_topic,), stored.get("projector", [])),
    }
    for consumer, (topics, rows) in consumed.items():
        positions = {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}
        for (topic, partition), (start, end) in sorted(bounds.items()):
            if topic in topics:
                resumes_at = max(start, positions.get((topic, partition), start))
                lag.add_metric([consumer, topic, str(partition)], max(0, end - resumes_at))
    return lag


async def scrape_families(
    pool: asyncpg.Pool,
    settings: Settings,
    stored: dict[str, list[asyncpg.Record]] | None = None,
) -> list[Metric]:
    """The gauges read from Postgres at scrape time, in one transaction under a timeout;
    `stored` (when given) receives the writer's and projector's stored offsets."""
    ok = GaugeMetricFamily("creditledger_scrape_ok", "1 when the scrape-time queries succeeded")
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
            lags = await projection_lag(conn)
            dead = await conn.fetch(DEAD_LETTERS)
            ledger = await conn.fetchrow(LEDGER)
            tables = await conn.fetch(TABLE_ROWS, list(ESTIMATED_TABLES))
            offsets = await conn.fetch(OFFSETS, settings.consumer_group)
            projector_offsets = await conn.fetch(OFFSETS, settings.projector_group)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        ok.add_metric([], 0)
        return [ok]
    if stored is not None:
        stored.update(writer=list(offsets), projector=list(projector_offsets))
    assert ledger is not None
    ok.add_metric([], 1)
    lag_s = GaugeMetricFamily(
        "creditledger_projection_lag_seconds",
        "Age of the oldest ledger entry a read model has not applied (0: caught up)",
        labels=["projection"],
    )
    behind = GaugeMetricFamily(
        "creditledger_projection_entries_behind", "Ledger entries a read model has not applied",
        labels=["projection"],
    )  # fmt: skip
    accounts_behind = GaugeMetricFamily(
        "creditledger_projection_accounts_behind", "Accounts whose read model trails the ledger",
        labels=["projection"],
    )  # fmt: skip
    for lag in lags:
        lag_s.add_metric([lag.projection], lag.oldest_unapplied_ms / 1000)
        behind.add_metric([lag.projection], lag.entries_behind)
        accounts_behind.add_metric([lag.projection], lag.accounts_behind)
    dead_letters = CounterMetricFamily(
        "creditledger_dead_letters", "Dead-lettered input records (rows of dead_letters)",
        labels=["topic", "code"],
    )  # fmt: skip
    for row in dead:
        dead_letters.add_metric([row["topic"], row["error_code"]], row["n"])
    entries = CounterMetricFamily("creditledger_ledger_entries", "Ledger entries written")
    entries.add_metric([], ledger["entries"])
    accounts = GaugeMetricFamily("creditledger_ledger_accounts", "Accounts with ledger state")
    accounts.add_metric([], ledger["accounts"])
    rows = GaugeMetricFamily(
        "creditledger_postgres_table_estimated_rows",
        "Rows of a growing table, as Postgres estimates them (pg_class.reltuples)",
        labels=["table"],
    )
    for row in tables:
        rows.add_metric([row["name"]], row["n"])
    consumed = GaugeMetricFamily(
        "creditledger_writer_next_offset",
        "The writer's committed next offset per input partition (records consumed)",
        labels=["topic", "partition"],
    )
    for row in offsets:
        consumed.add_metric([row["topic"], str(row["kafka_partition"])], row["next_offset"])
    families: list[Metric] = [ok, lag_s, behind, accounts_behind, dead_letters, entries, accounts]
    return [*families, rows, consumed]


async def render(app: FastAPI) -> bytes:
    """The Prometheus text exposition: HTTP metrics (when installed) and scrape-time gauges."""
    settings: Settings = app.state.settings
    http: HttpMetrics | None = getattr(app.state, "metrics", None)
    cache = _end_offsets_cache(app)
    stored: dict[str, list[asyncpg.Record]] = {}
    if cache is None:
        families = await scrape_families(app.state.pool, settings, stored)
        ends: LogBounds | None = None
    else:
        families, ends = await asyncio.gather(
            scrape_families(app.state.pool, settings, stored), cache.get()
        )
        if ends is None and http is not None:
            http.scrape_errors.labels("kafka").inc()
    if stored and ends is not None:
        families.append(consumer_lag_family(ends, settings, stored))
    elif not stored and http is not None:
        http.scrape_errors.labels("postgres").inc()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(families))
    return _counted_here(http) + generate_latest(scrape)


def _counted_here(http: HttpMetrics | None) -> bytes:
    """The process's own counters; with several API workers (prometheus_client's multiprocess
    mode, services/api/workers.py) every worker's, added up from their files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
        for collector in process_metrics.PROCESS_COLLECTORS:  # this worker's process figures
            workers.register(collector)
        return generate_latest(workers)
    own = generate_latest(http.registry) if http else b""
    return own + generate_latest(process_metrics.REGISTRY)
