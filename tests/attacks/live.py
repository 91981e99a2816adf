"""A live API for the attack tests: the composition root (`services.runtime.running`) serving
writer, projector and the whole API over a real socket, on a fresh namespace of the real Kafka
and Postgres, with the production defaults for rate limits and body sizes.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from services.platform.settings import Settings
from services.runtime import Running, running
from tests.pipeline import Driver, wait_until
from tests.servers import Servers, namespace_settings

SERVER_START_S = 30.0


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    admin_token: str
    settings: Settings
    driver: Driver  # publishes straight to Kafka, waits for the writer and projector
    handle: Running


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def live_api(servers: Servers, **overrides: Any) -> AsyncIterator[LiveApi]:
    """The API at production defaults, but for `overrides` (Settings fields)."""
    update = {"api_port": free_port(), **overrides}
    settings = namespace_settings(servers).model_copy(update=update)
    assert settings.database_url is not None and settings.admin_token is not None
    database = settings.database_url.rsplit("/", 1)[1]
    await _database(servers, f'CREATE DATABASE "{database}"')
    try:
        async with running(settings, ("writer", "projector", "api")) as handle:
            base_url = f"http://127.0.0.1:{settings.api_port}"
            await _until_serving(base_url, handle)
            driver = Driver(settings, handle.pool, handle.producer, handle.tasks)
            yield LiveApi(base_url, settings.admin_token, settings, driver, handle)
    finally:
        await _database(servers, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def _database(servers: Servers, statement: str) -> None:
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _until_serving(base_url: str, handle: Running) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:

        async def answers() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(answers, "the API to serve", SERVER_START_S, handle.tasks)


def assert_components_alive(api: LiveApi) -> None:
    for task in api.handle.tasks:
        assert not task.done(), f"a component ended under attack: {task!r}"
