"""The composition root: builds settings, pool, Kafka clients and runs the chosen components."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from projections.runner import Projector
from services.api.app import create_app, freeze_startup_heap
from services.api.pool import create_api_pool
from services.api.workers import http_config, serve_workers
from services.platform import stack
from services.platform.gc_policy import apply_gc_policy
from services.platform.kafka import ensure_topics, start_producer
from services.platform.postgres import create_pool, migrate
from services.platform.settings import Settings
from services.platform.startup import POSTGRES_NOT_READY, wait_until_ready
from services.webhooks.worker import WebhookWorker
from services.writer.runner import LedgerWriter
from services.writer.scheduler import run_scheduler

log = logging.getLogger("creditledger")
COMPONENTS = ("writer", "projector", "api")
# `serve` runs these and the webhook delivery worker (`creditledger webhooks` runs it alone).
SERVE_COMPONENTS = (*COMPONENTS, "webhooks")
SHUTDOWN_DEADLINE_S = 15.0


def local_state_dir() -> Path:
    return stack.default_stack_dir().parent


def resolve_settings(start_stack: bool) -> Settings:
    """Settings from the environment; missing URLs come from the local stack."""
    settings = Settings()
    if settings.kafka_bootstrap is None or settings.database_url is None:
        endpoints = stack.stack_up() if start_stack else stack.running_endpoints()
        if endpoints is None:
            raise SystemExit(
                "no Kafka/Postgres configured and no local stack running: run "
                "`creditledger stack up` or set CREDITLEDGER_KAFKA_BOOTSTRAP and "
                "CREDITLEDGER_DATABASE_URL"
            )
        settings = settings.with_endpoints(
            settings.kafka_bootstrap or endpoints.kafka_bootstrap,
            settings.database_url or endpoints.database_url,
        )
    if settings.admin_token is None:
        settings = settings.model_copy(update={"admin_token": local_admin_token()})
    return settings


def local_admin_token() -> str:
    """For the local stack only: a token made once and kept beside it (mode 0600)."""
    path = local_state_dir() / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as token_file:
            token_file.write("adm_" + secrets.token_urlsafe(24))
    return path.read_text().strip()


@dataclass
class Running:
    """Handles on the components running in this process."""

    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    writer: LedgerWriter | None = None
    projector: Projector | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running(settings: Settings, components: Collection[str]) -> AsyncIterator[Running]:
    """Migrate, create topics, start the components; on exit stop them within a deadline.
    A Postgres or Kafka not ready yet is waited for, up to `startup_wait_s` each step."""
    assert set(components) <= set(SERVE_COMPONENTS), f"unknown component in {components}"
    assert settings.database_url is not None and settings.kafka_bootstrap is not None
    database_url, wait_s = settings.database_url, settings.startup_wait_s
    # Each migration commits on its own, so a migrate cut short is simply run again.
    await wait_until_ready(
        lambda: migrate(database_url), "Postgres (migrations)", POSTGRES_NOT_READY, wait_s
    )
    await ensure_topics(settings, timeout_s=wait_s)
    # Writer, projector, scheduler and webhooks change nothing beyond their transactions (their
    # one advisory lock is transaction-scoped), so a released connection needs no reset query:
    # one round trip fewer per batch.
    pool = await wait_until_ready(
        lambda: create_pool(database_url, settings.db_pool_max_size, reset_sessions=False),
        "Postgres (pool)",
        POSTGRES_NOT_READY,
        wait_s,
    )
    try:
        producer = await start_producer(settings, wait_s)
    except BaseException:
        await pool.close()
        raise
    handle = Running(settings, pool, producer, asyncio.Event())
    try:
        if "writer" in components:
            handle.writer = LedgerWriter(settings, pool, producer)
            handle.tasks.append(asyncio.create_task(handle.writer.run(handle.stop)))
            handle.tasks.append(
                asyncio.create_task(run_scheduler(pool, producer, settings, handle.stop))
            )
        if "projector" in components:
            handle.projector = Projector(settings, pool)
            handle.tasks.append(asyncio.create_task(handle.projector.run(handle.stop)))
        if "webhooks" in components:
            worker = WebhookWorker(settings, pool)
            handle.tasks.append(asyncio.create_task(worker.run(handle.stop)))
        # Every process serves HTTP: the whole API, or its health endpoints only. The API reads
        # through a pool of its own, whose statements time out. `creditledger api` with
        # `api_workers` > 1 serves through worker processes (services/api/workers.py).
        if set(components) == {"api"} and settings.api_workers > 1:
            handle.tasks.append(asyncio.create_task(serve_workers(settings, handle.stop)))
        else:
            api_pool = pool
            if "api" in components:
                api_pool = await create_api_pool(settings)
                handle.closers.append(api_pool.close)
            app = create_app(settings, api_pool, producer, ops_only="api" not in components)
            handle.tasks.append(asyncio.create_task(_serve_http(app, settings, handle.stop)))
        yield handle
    finally:
        handle.stop.set()
        if handle.tasks:
            _, still_running = await asyncio.wait(handle.tasks, timeout=SHUTDOWN_DEADLINE_S)
            for task in still_running:
                task.cancel()
        for close in handle.closers:
            await close()
        await producer.stop()
        await pool.close()


async def serve(settings: Settings, components: Collection[str]) -> None:
    apply_gc_policy(settings)  # this process's components, before they allocate
    async with running(settings, components) as handle:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, handle.stop.set)
        log.info("running %s", ", ".join(sorted(components)))
        await _until_stop_or_failure(handle.stop, handle.tasks)


async def _until_stop_or_failure(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Return on stop; if any component dies, raise its error so the process exits non-zero."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done:
        if task is not stopper and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: signals belong to the process (they set `stop`), not to it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_http(app: FastAPI, settings: Settings, stop: asyncio.Event) -> None:
    config = http_config(app, settings)  # as each worker of `creditledger api` runs it
    server = _EmbeddedServer(config)
    freeze_startup_heap()
    api_task = asyncio.create_task(server.serve())
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait([api_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
    if api_task.done():  # uvicorn returns early only when it could not start (port taken)
        stop_task.cancel()
        raise RuntimeError(f"the API could not serve on {settings.api_host}:{settings.api_port}")
    server.should_exit = True
    await api_task
