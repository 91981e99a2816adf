"""The FastAPI applications. The process's composition root hands them a pool and settings."""

from __future__ import annotations

import gc
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.types import ASGIApp

from services.api import (
    routes_account_alerts,
    routes_account_settings,
    routes_accounts,
    routes_accounts_admin,
    routes_activity,
    routes_balance_history,
    routes_commands,
    routes_credits,
    routes_dashboard,
    routes_dashboard_sessions,
    routes_docs,
    routes_explain,
    routes_grants,
    routes_ingest,
    routes_keys,
    routes_ledger,
    routes_ops,
    routes_prices,
    routes_problems,
    routes_summary,
    routes_tokens,
    routes_usage,
    routes_webhooks,
)
from services.api.fastreads import FastReads
from services.api.metrics import install_metrics
from services.api.problems import install_problem_handlers
from services.api.strict_query import refuse_unknown_query
from services.platform.settings import Settings

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
_heap_frozen = False


class _App(FastAPI):
    """FastAPI with `FastReads` (when added) ahead of every layer, server-error handling
    included: the hot reads skip four layers and two send wrappers (~6 % of their CPU).
    Without it in `user_middleware`, FastAPI's own stack."""

    def build_middleware_stack(self) -> ASGIApp:
        added = self.user_middleware
        fast = [m for m in added if m.cls is FastReads]  # type: ignore[comparison-overlap]
        self.user_middleware = [m for m in added if m not in fast]
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = added
        return FastReads(app, api=self) if fast else app


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
    # FastAPI's native OpenTelemetry is off: nothing here configures a provider (the metrics are
    # Prometheus'), and with it on every request asks whether one was configured since.
    # Every route, of every router included, refuses unknown query parameters (strict_query.py).
    app = _App(
        title="creditledger",
        version="0.1.0",
        telemetry=NO_TELEMETRY,
        dependencies=[Depends(refuse_unknown_query)],
        docs_url=None,  # /docs and /redoc from local assets instead: routes_docs.py
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.producer = producer
    install_problem_handlers(app)
    if not ops_only:
        # Outermost (`_App`): it counts and logs its answers as the metrics middleware would.
        app.add_middleware(FastReads, api=app)
    install_metrics(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_problems.router)
    if not ops_only:
        app.include_router(routes_explain.router)
        app.include_router(routes_credits.router)
        app.include_router(routes_activity.router)
        app.include_router(routes_ledger.router)
        app.include_router(routes_grants.router)
        app.include_router(routes_usage.router)
        app.include_router(routes_summary.router)
        app.include_router(routes_accounts_admin.router)
        app.include_router(routes_keys.router)
        app.include_router(routes_commands.router)
        app.include_router(routes_tokens.router)
        app.include_router(routes_prices.router)
        app.include_router(routes_dashboard.router)
        app.include_router(routes_dashboard_sessions.router)
        app.include_router(routes_account_settings.router)
        app.include_router(routes_account_alerts.router)
        app.include_router(routes_balance_history.router)
        app.include_router(routes_ingest.router)
        app.include_router(routes_accounts.router)
        app.include_router(routes_webhooks.router)
        app.include_router(routes_docs.router)
    return app


def freeze_startup_heap() -> None:
    """Call once the process is built, just before it serves: everything made so far (modules,
    the app, its routes and models: ~10^5 objects) leaves the cyclic collector's view for good.
    A full collection otherwise walks them all, 40-100 ms with the event loop stopped, several
    times a minute under load: the reads' p99 was those pauses. Once per process (a process
    that starts its components again, as the tests do, would otherwise keep every cycle that
    was alive at each start)."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, without a running database or broker (routes only)."""
    unused: Any = None
    document: dict[str, Any] = create_app(Settings.model_construct(), unused, unused).openapi()
    return document
