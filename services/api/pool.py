"""The API's Postgres pool: one definition for `creditledger api`'s workers and for `serve`.

Every connection is opened at start and given the session functions the balance and check read
through (reads/balance.py), so the first requests after a start do not each pay a connection,
its set-up and the functions' creation (in the bench, the first read phase's p99 was 3-4 times
the later ones'). Statements time out (`api_statement_timeout_ms`); settings are
transaction-local, so a released connection needs no reset query.
"""

from __future__ import annotations

import asyncpg

from services.api.reads.balance import prepare_session
from services.platform.postgres import create_pool
from services.platform.settings import Settings


async def create_api_pool(settings: Settings) -> asyncpg.Pool:
    assert settings.database_url is not None
    return await create_pool(
        settings.database_url, settings.db_pool_max_size, settings.api_statement_timeout_ms,
        reset_sessions=False, warm=True, on_connect=prepare_session,
    )  # fmt: skip
