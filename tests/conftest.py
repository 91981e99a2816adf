"""Shared fixtures: real servers for the session, an isolated namespace per test."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest

from services.platform import offsets
from services.platform.kafka import delete_topics, ensure_topics
from services.platform.metrics import REGISTRY
from services.platform.postgres import migrate
from services.platform.settings import Settings
from services.writer import metrics as _writer_metrics  # noqa: F401 - registers the counter
from tests.servers import Servers, namespace_settings, real_servers

NamespaceFactory = Callable[[], Awaitable[Settings]]


def skipped_offsets_total() -> float:
    """Offsets the writers and projectors run in this process passed over without records."""
    return sum(
        sample.value
        for family in offsets.SKIPPED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def gap_rereads_total() -> float:
    """Writer batches read again because they passed over offsets (services/writer/gaps.py)."""
    found = REGISTRY.get_sample_value("creditledger_writer_gap_rereads_total")
    return found or 0.0


@pytest.fixture(autouse=True)
def no_offset_skipped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test's consumers apply every record they pass (our producers are not
    transactional: a gap in a batch's offsets is a lost record), unless it is marked
    `skips_offsets`. A writer batch read again for a gap healed it, so that only warns: a
    consumer position ran ahead of its stored offsets, which is worth knowing."""
    before, rereads = skipped_offsets_total(), gap_rereads_total()
    yield
    if request.node.get_closest_marker("skips_offsets") is None:
        skipped = skipped_offsets_total() - before
        assert skipped == 0, f"consumers passed over {skipped:.0f} offsets (logged: skipped)"
        if (again := gap_rereads_total() - rereads) > 0:
            warnings.warn(f"{again:.0f} writer batches read again for a gap", stacklevel=1)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with real_servers() as found:
        yield found


@pytest.fixture
async def make_namespace(servers: Servers) -> AsyncIterator[NamespaceFactory]:
    """Creates fresh namespaces (database migrated, topics created); drops the databases after."""
    created: list[str] = []
    namespaces: list[Settings] = []

    async def make() -> Settings:
        settings = namespace_settings(servers)
        assert settings.database_url is not None
        database = settings.database_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(servers.database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{database}"')
        finally:
            await admin.close()
        created.append(database)
        namespaces.append(settings)
        await migrate(settings.database_url)
        await ensure_topics(settings)
        return settings

    yield make
    for settings in namespaces:  # a broker that keeps every test's partitions runs out of files
        await delete_topics(settings)
    admin = await asyncpg.connect(servers.database_url)
    try:
        for database in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def namespace(make_namespace: NamespaceFactory) -> Settings:
    return await make_namespace()
