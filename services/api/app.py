"""The FastAPI applications. The process's composition root hands them a pool and settings."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.api import (
    routes_admin,
    routes_credits,
    routes_dashboard,
    routes_ingest,
    routes_ops,
    routes_prices,
)
from services.api.metrics import install_metrics
from services.api.problems import install_problem_handlers
from services.platform.settings import Settings


def create_app(
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    *,
    ops_only: bool = False,
) -> FastAPI:
    """The read API; with `ops_only`, just the operations endpoints (writer/projector processes).

    `producer` publishes admin commands (acks=all, idempotent); the process owns its lifecycle.
    """
    app = FastAPI(title="creditledger", version="0.1.0")
    app.state.settings = settings
    app.state.pool = pool
    app.state.producer = producer
    install_problem_handlers(app)
    install_metrics(app)
    app.include_router(routes_ops.router)
    if not ops_only:
        app.include_router(routes_credits.router)
        app.include_router(routes_admin.router)
        app.include_router(routes_prices.router)
        app.include_router(routes_dashboard.router)
        app.include_router(routes_ingest.router)
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, without a running database or broker (routes only)."""
    unused: Any = None
    document: dict[str, Any] = create_app(Settings.model_construct(), unused, unused).openapi()
    return document
