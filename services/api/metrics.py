"""Prometheus metrics: HTTP traffic measured by a middleware, ledger state read at scrape.

`install_metrics(app)` (called by `create_app`) adds the middleware and the app's registry; the
`GET /metrics` route renders that registry plus the gauges computed at scrape from Postgres:
projection lag per model, dead letters, ledger entries and accounts, processed requests and the
writer's consumed offsets. The scrape queries run under a statement timeout, so a slow database
makes the scrape report `creditledger_scrape_ok 0`, never hang.

Labels are bounded: `route` is the route template (`/v1/admin/accounts/{account_id}/grants`),
never the raw path; requests that match no route share the label `<unmatched>`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.lag import projection_lag
from services.platform.settings import Settings

SCRAPE_STATEMENT_TIMEOUT_MS = 3000
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class HttpMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    rate_limited: Counter


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
    )  # fmt: skip


class MetricsMiddleware:
    """Pure ASGI (no body buffering): counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI) -> None:
    """Measure the app's HTTP traffic; call before the app starts (in create_app)."""
    metrics = new_http_metrics()
    app.state.metrics = metrics
    app.state.rate_limited_counter = metrics.rate_limited
    app.add_middleware(MetricsMiddleware, metrics=metrics)


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
PROCESSED = """
SELECT (SELECT count(*) FROM processed_requests) AS requests,
       (SELECT count(*) FROM processed_commands) AS commands
"""
OFFSETS = """
SELECT topic, kafka_partition, next_offset FROM kafka_offsets WHERE consumer = $1
ORDER BY topic, kafka_partition
"""


async def scrape_families(pool: asyncpg.Pool, settings: Settings) -> list[Metric]:
    """The gauges read from Postgres at scrape time, in one transaction under a timeout."""
    ok = GaugeMetricFamily("creditledger_scrape_ok", "1 when the scrape-time queries succeeded")
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
            lags = await projection_lag(conn)
            dead = await conn.fetch(DEAD_LETTERS)
            ledger = await conn.fetchrow(LEDGER)
            processed = await conn.fetchrow(PROCESSED)
            offsets = await conn.fetch(OFFSETS, settings.consumer_group)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        ok.add_metric([], 0)
        return [ok]
    assert ledger is not None and processed is not None
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
    dead_letters = GaugeMetricFamily(
        "creditledger_dead_letters", "Dead-lettered input records", labels=["topic", "code"]
    )
    for row in dead:
        dead_letters.add_metric([row["topic"], row["error_code"]], row["n"])
    entries = GaugeMetricFamily("creditledger_ledger_entries", "Ledger entries written")
    entries.add_metric([], ledger["entries"])
    accounts = GaugeMetricFamily("creditledger_ledger_accounts", "Accounts with ledger state")
    accounts.add_metric([], ledger["accounts"])
    requests = GaugeMetricFamily(
        "creditledger_processed_requests", "Usage events accepted (by request_id)"
    )
    requests.add_metric([], processed["requests"])
    commands = GaugeMetricFamily(
        "creditledger_processed_commands", "Commands processed (applied or rejected)"
    )
    commands.add_metric([], processed["commands"])
    consumed = GaugeMetricFamily(
        "creditledger_writer_next_offset",
        "The writer's committed next offset per input partition (records consumed)",
        labels=["topic", "partition"],
    )
    for row in offsets:
        consumed.add_metric([row["topic"], str(row["kafka_partition"])], row["next_offset"])
    families: list[Metric] = [ok, lag_s, behind, accounts_behind, dead_letters, entries, accounts]
    return [*families, requests, commands, consumed]


async def render(app: FastAPI) -> bytes:
    """The Prometheus text exposition: HTTP metrics (when installed) and scrape-time gauges."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(await scrape_families(app.state.pool, app.state.settings)))
    http: HttpMetrics | None = getattr(app.state, "metrics", None)
    return (generate_latest(http.registry) if http else b"") + generate_latest(scrape)
