"""The price book's body (`PUT /v1/admin/price-book`, `creditledger prices set FILE`) and its
table (`price_book_versions`, migration 0007): the named queries and the few calls on them.

A version is appended, numbered in commit order, and never changed. `add_version` enforces the
contract's rule that a version can't start in the past: its `effective_at` must lie at least
`min_lead_s` (the settings' `max_future_skew_s`) ahead of the moment it is committed. An event
is refused beyond that skew of its log time, so every call a new version prices reaches the log
after the version is committed, and the writer, which reads the versions after fetching a batch,
always sees it (services/writer/runner.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Credits, UtcTime
from services.core.pricing import DEFAULT_PRICE_BOOK, PriceSchedule, PriceVersion

# services.platform.postgres.DbConnection, spelt here: schemas import no service.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy

MAX_PRICED_ENDPOINTS = 10_000
Endpoint = Annotated[str, Field(min_length=1, max_length=256)]  # as in the usage event

LOCK_VERSIONS = "LOCK TABLE price_book_versions IN EXCLUSIVE MODE"  # readers go on reading
LIST_VERSIONS = """
SELECT version, effective_at, default_credits, prices, created_at
FROM price_book_versions ORDER BY version
"""
ADD_VERSION = """
INSERT INTO price_book_versions (version, effective_at, default_credits, prices)
SELECT coalesce(max(version), 0) + 1, $1, $2, $3 FROM price_book_versions
RETURNING version, effective_at, default_credits, prices, created_at
"""
COPY_VERSION = """
INSERT INTO price_book_versions (version, effective_at, default_credits, prices, created_at)
VALUES ($1, $2, $3, $4, $5)
"""
ANY_CALL_PROCESSED = "SELECT EXISTS (SELECT 1 FROM processed_requests)"


class PriceBookBody(BaseModel):
    """A new version: from `effective_at`, `prices` {endpoint: credits}, else `default_credits`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effective_at: UtcTime
    default_credits: Credits
    prices: Annotated[dict[Endpoint, Credits], Field(max_length=MAX_PRICED_ENDPOINTS)]


class StartsTooSoon(ValueError):
    """The version would start less than the required lead ahead of now (or in the past)."""

    def __init__(self, earliest: datetime) -> None:
        super().__init__(f"must be at least the future skew ahead of now: {iso(earliest)} or later")
        self.earliest = earliest


async def load_versions(conn: DbConnection) -> tuple[PriceVersion, ...]:
    return tuple(_version(row) for row in await conn.fetch(LIST_VERSIONS))


async def load_schedule(conn: DbConnection) -> PriceSchedule:
    return PriceSchedule(await load_versions(conn))


async def add_version(conn: DbConnection, body: PriceBookBody, min_lead_s: float) -> PriceVersion:
    """Append a version; StartsTooSoon unless it starts `min_lead_s` after the commit (checked
    once the lock is held, since waiting for it takes time)."""
    async with conn.transaction():
        await conn.execute(LOCK_VERSIONS)
        earliest = datetime.now(UTC) + timedelta(seconds=min_lead_s)
        if body.effective_at < earliest:
            raise StartsTooSoon(earliest)
        return _version(await conn.fetchrow(ADD_VERSION, *_columns(body)))


async def seed_first_version(conn: DbConnection, body: PriceBookBody) -> PriceVersion | None:
    """The book's first version at any `effective_at`, past ones included, but only while the
    book is empty and the ledger has priced no call yet (a fresh installation: the demo), so no
    call ever priced changes. None, and nothing written, otherwise."""
    async with conn.transaction():
        await conn.execute(LOCK_VERSIONS)
        if await load_versions(conn) or await conn.fetchval(ANY_CALL_PROCESSED):
            return None
        return _version(await conn.fetchrow(ADD_VERSION, *_columns(body)))


async def copy_versions(conn: DbConnection, versions: Iterable[PriceVersion]) -> None:
    """Another database's versions, numbers kept (a replay's fresh database, before it reads)."""
    async with conn.transaction():
        await conn.execute(LOCK_VERSIONS)
        for v in versions:
            await conn.execute(
                COPY_VERSION, v.version, v.effective_at, v.default_credits, dict(v.prices),
                datetime.now(UTC),
            )  # fmt: skip


# --- JSON (the API's and the CLI's answers, a replay's manifest) ---------------------------


def version_json(version: PriceVersion | None) -> dict[str, Any]:
    """A version as JSON; None is version 0, the built-in book (in force before any version)."""
    if version is None:
        return {
            "version": 0, "effective_at": None, "builtin": True,
            "default_credits": DEFAULT_PRICE_BOOK.default_credits,
            "prices": dict(DEFAULT_PRICE_BOOK.credits_by_endpoint),
        }  # fmt: skip
    return {
        "version": version.version, "effective_at": iso(version.effective_at), "builtin": False,
        "default_credits": version.default_credits, "prices": dict(version.prices),
    }  # fmt: skip


def book_json(versions: Iterable[PriceVersion], now: datetime) -> dict[str, Any]:
    """`{current, versions}`: the version in force now, and every version set, oldest first."""
    schedule = PriceSchedule(tuple(versions))
    return {
        "current": version_json(schedule.in_force(now)),
        "versions": [version_json(v) for v in sorted(schedule.versions, key=_number)],
    }


def versions_from_json(data: Iterable[dict[str, Any]]) -> tuple[PriceVersion, ...]:
    """What `version_json` wrote (version 0 left out: it is code, not data)."""
    return tuple(
        PriceVersion(
            version=int(item["version"]),
            effective_at=datetime.fromisoformat(item["effective_at"]).astimezone(UTC),
            default_credits=int(item["default_credits"]),
            prices={str(k): int(v) for k, v in item["prices"].items()},
        )
        for item in data
        if int(item["version"]) > 0
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(version: PriceVersion) -> int:
    return version.version


def _columns(body: PriceBookBody) -> tuple[datetime, int, dict[str, int]]:
    return body.effective_at.astimezone(UTC), body.default_credits, dict(body.prices)


def _version(row: Any) -> PriceVersion:
    prices = row["prices"]
    if isinstance(prices, str):  # a connection without the pool's jsonb codec
        prices = json.loads(prices)
    return PriceVersion(
        version=row["version"],
        effective_at=row["effective_at"].astimezone(UTC),
        default_credits=row["default_credits"],
        prices={str(k): int(v) for k, v in prices.items()},
    )
