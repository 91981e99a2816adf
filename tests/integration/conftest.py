"""A running writer + projector on a fresh namespace, and a driver to publish and settle."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.pipeline import Driver


@pytest.fixture
async def driver(namespace: Settings) -> AsyncIterator[Driver]:
    async with running(namespace, ("writer", "projector")) as pipeline:
        yield Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
