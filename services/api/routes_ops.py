"""Operations endpoints, served by every process (API, writer, projector) for its health checks."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request

from services.api.problems import Problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    # A component that fails ends its process, so answering at all means every one is alive.
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    try:
        await pool.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError) as error:
        raise Problem(503, "unavailable", "Postgres is not reachable") from error
    return {"status": "ready"}
