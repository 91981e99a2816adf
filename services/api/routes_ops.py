"""Operations endpoints, served by every process (API, writer, projector) for its health checks.

- `/healthz`: the process is alive.
- `/readyz`: Postgres answers, Kafka answers a metadata request and holds every contract topic
  with the contract's settings (`kafka.topic_problems`: none missing, LogAppendTime on the
  inputs, as many usage as command partitions), and no read model trails the ledger by more
  than `ready_projection_lag_max_ms`; else 503 problem+json whose `checks` name the failing
  check(s) (the `kafka` check names each wrong topic and what is wrong with it; `topics` maps
  them). Every check has a timeout, so the probe answers within a few seconds.
- `/metrics`: Prometheus text (see metrics.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from projections.lag import projection_lag
from services.api.metrics import render
from services.api.models import TYPED
from services.api.models.ops import AsyncApiDocument, Health, Readiness
from services.api.problems import Problem, problem_responses
from services.platform.kafka import describe_problems, topic_problems
from services.platform.settings import Settings

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_S = 3.0


@router.get(
    "/healthz", response_model=Health, operation_id="getHealth", summary="The process is alive"
)
async def healthz() -> dict[str, str]:
    # A component that fails ends its process, so answering at all means every one is alive.
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    operation_id="getReadiness",
    summary="Postgres, Kafka, the contract topics and the projections are all fine",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    settings: Settings = request.app.state.settings
    topics: dict[str, str] = {}
    postgres, kafka = await asyncio.gather(
        _postgres_check(pool), _kafka_check(request.app.state.producer, settings, topics)
    )
    checks: dict[str, str] = {"postgres": postgres, "kafka": kafka}
    if postgres == "ok":
        checks["projections"] = await _lag_check(pool, settings.ready_projection_lag_max_ms)
    else:
        checks["projections"] = "unknown: Postgres is not reachable"
    failing = [name for name, outcome in checks.items() if outcome != "ok"]
    if failing:
        raise Problem(
            503, "not-ready", f"not ready: {', '.join(failing)}",
            extra={"failing": failing, "checks": checks, "topics": topics},
        )  # fmt: skip
    return {"status": "ready", "checks": checks}


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="getMetrics",
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    return Response(await render(request.app), media_type=CONTENT_TYPE_LATEST)


async def _postgres_check(pool: asyncpg.Pool) -> str:
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return "failed: Postgres is not reachable"
    return "ok"


async def _kafka_check(
    producer: AIOKafkaProducer, settings: Settings, topics: dict[str, str]
) -> str:
    """The broker answers, and every contract topic is there with its settings; the wrong ones
    go into `topics` (name: what is wrong)."""
    try:
        cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), CHECK_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError):
        return "failed: Kafka is not reachable"
    if not cluster.brokers():
        return "failed: Kafka reports no brokers"
    try:
        topics.update(
            await asyncio.wait_for(topic_problems(producer.client, settings), CHECK_TIMEOUT_S)
        )
    except (KafkaError, OSError, TimeoutError):
        return "failed: the topics could not be described"
    return f"failed: {describe_problems(topics)}" if topics else "ok"


async def _lag_check(pool: asyncpg.Pool, max_ms: int) -> str:
    try:
        lags = await asyncio.wait_for(projection_lag(pool), CHECK_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return "failed: projection lag could not be read"
    worst = max(lags, key=lambda lag: lag.oldest_unapplied_ms)
    if worst.oldest_unapplied_ms > max_ms:
        return (
            f"failed: {worst.projection} trails the ledger by "
            f"{worst.oldest_unapplied_ms:.0f} ms (bound {max_ms} ms)"
        )
    return "ok"


@router.get(
    "/asyncapi.json",
    response_model=AsyncApiDocument,
    operation_id="getAsyncApi",
    summary="The AsyncAPI document of the topics",
    **TYPED,
)
async def asyncapi() -> dict[str, Any]:
    from schemas.asyncapi import published_document  # the committed file: no faststream needed

    return published_document()
