"""The FastAPI application. The process's composition root hands it a pool and settings."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request

from services.api import routes_admin, routes_credits
from services.api.problems import Problem, install_problem_handlers
from services.platform.settings import Settings


def create_app(settings: Settings, pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI(title="creditledger", version="0.1.0")
    app.state.settings = settings
    app.state.pool = pool
    install_problem_handlers(app)
    app.include_router(routes_credits.router)
    app.include_router(routes_admin.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> dict[str, Any]:
        try:
            await request.app.state.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError) as error:
            raise Problem(503, "unavailable", "Postgres is not reachable") from error
        return {"status": "ready"}

    return app
