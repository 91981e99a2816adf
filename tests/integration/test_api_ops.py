"""Operations endpoints against real Kafka and Postgres: /readyz checks and /metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.api.app import create_app
from services.platform.metrics import REGISTRY
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.runtime import running
from tests.messages import grant, usage
from tests.pipeline import Driver, wait_until

pytestmark = pytest.mark.integration


async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def get(app: FastAPI, path: str) -> httpx.Response:
    async for http in client(app):
        return await http.get(path)
    raise AssertionError("no client")


async def test_ready_when_everything_answers(namespace: Settings) -> None:
    async with running(namespace, ("writer", "projector")) as handle:
        app = create_app(namespace, handle.pool, handle.producer)
        ready = await get(app, "/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok", "projections": "ok"}
        assert (await get(app, "/healthz")).status_code == 200


async def test_not_ready_while_projections_trail_the_ledger(namespace: Settings) -> None:
    strict = namespace.model_copy(update={"ready_projection_lag_max_ms": 0})
    async with running(strict, ("writer",)) as handle:  # no projector: the views stay behind
        driver = Driver(strict, handle.pool, handle.producer, handle.tasks)
        await driver.commands(grant("a", 5, "g1"))

        async def written() -> bool:
            return bool(await handle.pool.fetchval("SELECT count(*) FROM ledger_entries"))

        await wait_until(written, "the grant to reach the ledger", components=handle.tasks)
        app = create_app(strict, handle.pool, handle.producer, ops_only=True)
        answer = await get(app, "/readyz")
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        body = answer.json()
        assert body["failing"] == ["projections"]
        assert body["checks"]["postgres"] == body["checks"]["kafka"] == "ok"
        assert "trails the ledger" in body["checks"]["projections"]

        lenient = create_app(namespace, handle.pool, handle.producer, ops_only=True)
        assert (await get(lenient, "/readyz")).status_code == 200  # within the 10 s default


async def test_not_ready_without_kafka_or_postgres(namespace: Settings) -> None:
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url, 2)
    dead_kafka = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started: no broker
    try:
        answer = await get(create_app(namespace, pool, dead_kafka, ops_only=True), "/readyz")
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["kafka"]
    finally:
        await pool.close()
    closed: asyncpg.Pool = pool  # a closed pool cannot reach Postgres
    async with running(namespace, ()) as handle:
        answer = await get(create_app(namespace, closed, handle.producer), "/readyz")
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["postgres", "projections"]


def _counted(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_metrics_expose_http_ledger_and_projection_figures(namespace: Settings) -> None:
    # The writer's counters are the process's (other tests' writers counted before): deltas.
    usage_before = _counted("creditledger_writer_usage_events_total")
    applied_before = _counted("creditledger_writer_commands_total", {"status": "applied"})
    async with running(namespace, ("writer", "projector")) as handle:
        driver = Driver(namespace, handle.pool, handle.producer, handle.tasks)
        await driver.commands(grant("m", 10, "g1"), ("m", b"{not json"))
        await driver.usage(usage("m", "r1", credits=2))
        await driver.settled()
        app = create_app(namespace, handle.pool, handle.producer)
        async for http in client(app):
            await http.get("/v1/credits/balance")  # 401, counted by its route template
            await http.get("/v1/admin/accounts/x/keys")
            await http.get("/nowhere")
            scraped = await http.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        text = scraped.text
        for line in (
            'creditledger_http_requests_total{method="GET",route="/v1/credits/balance",'
            'status="401"} 1.0',
            'creditledger_http_requests_total{method="GET",'
            'route="/v1/admin/accounts/{account_id}/keys",status="401"} 1.0',
            'creditledger_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0',
            "creditledger_scrape_ok 1.0",
            "creditledger_ledger_entries_total 2.0",
            "creditledger_ledger_accounts 1.0",
            'creditledger_postgres_table_estimated_rows{table="processed_requests"}',
            'creditledger_projection_lag_seconds{projection="balance"} 0.0',
            'creditledger_projection_entries_behind{projection="grants"} 0.0',
        ):
            assert line in text, line
        assert "creditledger_http_request_duration_seconds_bucket{" in text
        assert (
            f'creditledger_dead_letters_total{{code="malformed-json",'
            f'topic="{namespace.commands_topic}"}} 1.0'
        ) in text
        assert 'creditledger_writer_next_offset{partition="' in text
        assert "# TYPE creditledger_writer_usage_events_total counter" in text
        assert _counted("creditledger_writer_usage_events_total") == usage_before + 1
        assert (
            _counted("creditledger_writer_commands_total", {"status": "applied"})
            == applied_before + 1
        )
        assert "process_resident_memory_bytes " in text

        # Writer and projector processes (ops-only apps) serve the same gauges.
        bare = await get(create_app(namespace, handle.pool, handle.producer, ops_only=True),
                         "/metrics")  # fmt: skip
        assert "creditledger_ledger_entries_total 2.0" in bare.text


def writer_lag(text: str, topic: str) -> int:
    pattern = (
        r'^creditledger_consumer_lag_records\{consumer="writer",partition="\d+",'
        rf'topic="{re.escape(topic)}"\}} (\d+)\.0$'
    )
    found = [int(n) for n in re.findall(pattern, text, re.MULTILINE)]
    assert found, f"no writer lag for {topic}"
    return sum(found)


async def test_metrics_expose_consumer_lag_per_partition(namespace: Settings) -> None:
    events = [usage("lagging", f"r{i}", credits=1) for i in range(7)]
    async with running(namespace, ()) as handle:  # no writer: the usage topic piles up
        await Driver(namespace, handle.pool, handle.producer).usage(*events)
        scraped = (await get(create_app(namespace, handle.pool, handle.producer), "/metrics")).text
        assert writer_lag(scraped, namespace.usage_topic) == len(events)
        assert writer_lag(scraped, namespace.commands_topic) == 0
        assert 'creditledger_consumer_lag_records{consumer="projector",partition="' in scraped

    async with running(namespace, ("writer",)) as handle:
        lag = -1

        async def caught_up() -> bool:
            nonlocal lag
            app = create_app(namespace, handle.pool, handle.producer)  # fresh: no cached offsets
            lag = writer_lag((await get(app, "/metrics")).text, namespace.usage_topic)
            return lag == 0

        await wait_until(caught_up, "the writer's lag to reach 0", components=handle.tasks)


async def test_metrics_count_a_kafka_timeout_and_export_no_lag(namespace: Settings) -> None:
    dead = namespace.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    async with running(namespace, ()) as handle:
        app = create_app(dead, handle.pool, handle.producer)
        text = (await get(app, "/metrics")).text
        assert "creditledger_scrape_ok 1.0" in text
        assert "creditledger_consumer_lag_records{" not in text
        assert 'creditledger_scrape_errors_total{source="kafka"} 1.0' in text
