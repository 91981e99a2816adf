"""A fresh namespace for one bench run: its own database (migrated) and topic prefix."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.platform.kafka import delete_topics, ensure_topics
from services.platform.postgres import migrate
from services.platform.settings import Settings


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def create_namespace(base: Settings, accounts: int) -> Settings:
    """`base` names the servers (its database is one we may connect to, to create others)."""
    assert base.database_url is not None and base.kafka_bootstrap is not None
    run_id = uuid.uuid4().hex[:10]
    prefix = f"bench-{run_id}."
    database = f"cl_bench_{run_id}"
    settings = base.model_copy(
        update={
            "database_url": with_database(base.database_url, database),
            "admin_token": base.admin_token or f"adm_bench_{run_id}",
            "usage_topic": prefix + "credits.usage.v1",
            "commands_topic": prefix + "credits.commands.v1",
            "ledger_topic": prefix + "credits.ledger.v1",
            "alerts_topic": prefix + "credits.alerts.v1",
            "consumer_group": prefix + "writer",
            "projector_group": prefix + "projector",
            "expiry_scan_interval_s": 3600.0,
            # The bench reads much faster than any client would: the rate limit is not measured.
            "api_rate_limit_per_s": 1e9,
            "api_rate_limit_burst": 1_000_000_000,
            "db_pool_max_size": max(base.db_pool_max_size, 20),
        }
    )
    admin = await asyncpg.connect(base.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    assert settings.database_url is not None
    await migrate(settings.database_url)
    await ensure_topics(settings)
    return settings


async def drop_namespace(base: Settings, settings: Settings) -> None:
    """Drops the database and the topics (a broker keeping every run's partitions runs out of
    open files: three per partition segment)."""
    assert base.database_url is not None and settings.database_url is not None
    await delete_topics(settings)
    admin = await asyncpg.connect(base.database_url)
    try:
        name = database_name(settings.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
