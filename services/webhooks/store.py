"""The worker's named queries (tables of migration 0012): endpoints, pending deliveries, tries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.platform.postgres import DbConnection

LIVE_ENDPOINTS = """
SELECT endpoint_id, url, events, secret, created_at FROM webhook_endpoints
WHERE deleted_at IS NULL
"""
# Claimed by this worker for `$6` seconds at once: it is about to queue them.
INSERT_PENDING = """
INSERT INTO webhook_deliveries AS d
    (account_id, event_id, endpoint_id, event_type, body, next_try_at)
SELECT account_id, event_id, endpoint_id, event_type, body, now() + make_interval(secs => $6)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])
    AS n(account_id, event_id, endpoint_id, event_type, body)
ON CONFLICT (account_id, event_id, endpoint_id) DO NOTHING
RETURNING account_id, event_id, endpoint_id, body, tries, created_at
"""
# Due pending deliveries, leased for `$1` seconds, skipping endpoints whose queue is full.
CLAIM_DUE = """
UPDATE webhook_deliveries d SET next_try_at = now() + make_interval(secs => $1)
FROM webhook_endpoints e
WHERE e.endpoint_id = d.endpoint_id
  AND (d.account_id, d.event_id, d.endpoint_id) IN (
    SELECT account_id, event_id, endpoint_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_try_at <= now() AND NOT (endpoint_id = ANY($3::text[]))
    ORDER BY next_try_at LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING d.account_id, d.event_id, d.endpoint_id, d.body, d.tries, d.created_at,
          e.url, e.secret, e.deleted_at
"""
# Just before a try: still pending (not cancelled, not delivered by another worker), leased
# again for the try, with the tries made so far.
RENEW_LEASE = """
UPDATE webhook_deliveries SET next_try_at = now() + make_interval(secs => $4)
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
RETURNING tries, created_at
"""
RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (account_id, event_id, endpoint_id, try, status_code, latency_ms,
                              error, attempted_at, next_try_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
"""
UPDATE_DELIVERY = """
UPDATE webhook_deliveries
SET tries = $4, status = $5, next_try_at = $6,
    finished_at = CASE WHEN $5 = 'pending' THEN NULL ELSE now() END
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
"""
CANCEL_DELIVERY = """
UPDATE webhook_deliveries SET status = 'cancelled', next_try_at = NULL, finished_at = now()
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
"""

# Queued but not tried when the worker stopped: due at once for whoever polls next.
RELEASE = """
UPDATE webhook_deliveries d SET next_try_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS r(account_id, event_id, endpoint_id)
WHERE d.account_id = r.account_id AND d.event_id = r.event_id
  AND d.endpoint_id = r.endpoint_id AND d.status = 'pending'
"""


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    url: str
    events: frozenset[str]  # empty: every alert type
    secret: str
    created_at: datetime

    def wants(self, alert_type: str) -> bool:
        return not self.events or alert_type in self.events


@dataclass(frozen=True)
class Delivery:
    """One alert for one endpoint, as the worker queues it."""

    account_id: str
    event_id: str
    endpoint: Endpoint
    body: bytes

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.account_id, self.event_id, self.endpoint.endpoint_id)


@dataclass(frozen=True)
class NewDelivery:
    account_id: str
    event_id: str
    endpoint_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What one try did; `next_try_at` None with status `pending` never happens."""

    try_number: int
    status_code: int | None
    latency_ms: int
    error: str | None
    attempted_at: datetime
    state: str  # pending (another try is due), delivered, failed
    next_try_at: datetime | None


async def live_endpoints(pool: asyncpg.Pool) -> list[Endpoint]:
    return [
        Endpoint(r["endpoint_id"], r["url"], frozenset(r["events"]), r["secret"], r["created_at"])
        for r in await pool.fetch(LIVE_ENDPOINTS)
    ]


async def insert_pending(
    conn: DbConnection, rows: list[NewDelivery], lease_s: float
) -> list[asyncpg.Record]:
    """The deliveries new to Postgres (a record read again after a crash inserts nothing)."""
    if not rows:
        return []
    return list(
        await conn.fetch(
            INSERT_PENDING,
            [r.account_id for r in rows],
            [r.event_id for r in rows],
            [r.endpoint_id for r in rows],
            [r.event_type for r in rows],
            [r.body for r in rows],
            lease_s,
        )
    )


async def claim_due(
    pool: asyncpg.Pool, lease_s: float, limit: int, skip_endpoints: list[str]
) -> list[asyncpg.Record]:
    return list(await pool.fetch(CLAIM_DUE, lease_s, limit, skip_endpoints))


async def renew_lease(
    pool: asyncpg.Pool, delivery: Delivery, lease_s: float
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(RENEW_LEASE, *delivery.key, lease_s)
    return row


async def record_outcome(pool: asyncpg.Pool, delivery: Delivery, outcome: Outcome) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            RECORD_ATTEMPT, *delivery.key, outcome.try_number, outcome.status_code,
            outcome.latency_ms, outcome.error, outcome.attempted_at, outcome.next_try_at,
        )  # fmt: skip
        await conn.execute(
            UPDATE_DELIVERY, *delivery.key, outcome.try_number, outcome.state, outcome.next_try_at
        )


async def cancel(pool: asyncpg.Pool, key: tuple[str, str, str]) -> None:
    await pool.execute(CANCEL_DELIVERY, *key)


async def release(pool: asyncpg.Pool, keys: list[tuple[str, str, str]]) -> None:
    if keys:
        await pool.execute(RELEASE, *(list(column) for column in zip(*keys, strict=True)))
