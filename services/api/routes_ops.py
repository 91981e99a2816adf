"""Operations endpoints, served by every process (API, writer, projector) for its health checks.

- `/healthz`: the process is alive.
- `/readyz`: Postgres answers, Kafka answers a metadata request, and no read model trails the
  ledger by more than `ready_projection_lag_max_ms`; else 503 problem+json whose `checks` name
  the failing check(s). Every check has a timeout, so the probe answers within a few seconds.
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
from services.api.problems import Problem, problem_responses
from services.platform.settings import Settings

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    # A component that fails ends its process, so answering at all means every one is alive.
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
async def readyz(request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    settings: Settings = request.app.state.settings
    postgres, kafka = await asyncio.gather(
        _postgres_check(pool), _kafka_check(request.app.state.producer)
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
            extra={"failing": failing, "checks": checks},
        )  # fmt: skip
    return {"status": "ready", "checks": checks}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}
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


async def _kafka_check(producer: AIOKafkaProducer) -> str:
    try:
        cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), CHECK_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError):
        return "failed: Kafka is not reachable"
    return "ok" if cluster.brokers() else "failed: Kafka reports no brokers"


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


@router.get("/asyncapi.json", summary="The AsyncAPI document of the topics")
async def asyncapi() -> dict[str, Any]:
    from schemas.asyncapi import asyncapi_document

    return asyncapi_document()
