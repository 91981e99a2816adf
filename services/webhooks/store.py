"""The worker's named queries (tables of migrations 0012 and 0015): endpoints, pending
deliveries, tries.

Leases: a worker that inserts or claims a pending delivery sets a fresh `lease_token` and moves
`next_try_at` ahead by the lease. Every later step of that worker (renew, record a try, move
the delivery on, release) requires its token and an unexpired lease: once a lease lapses,
another worker may claim the delivery (a new token) and send it, and the first one then
changes nothing and sends nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.platform.postgres import DbConnection

LIVE_ENDPOINTS = """
SELECT endpoint_id, url, events, secret, created_at FROM webhook_endpoints
WHERE deleted_at IS NULL
"""
# Claimed by this worker for `$6` seconds at once: it is about to queue them.
INSERT_PENDING = """
INSERT INTO webhook_deliveries AS d
    (account_id, event_id, endpoint_id, event_type, body, alert_at, next_try_at, lease_token)
SELECT account_id, event_id, endpoint_id, event_type, body, alert_at,
       now() + make_interval(secs => $6), gen_random_uuid()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $7::timestamptz[])
    AS n(account_id, event_id, endpoint_id, event_type, body, alert_at)
ON CONFLICT (account_id, event_id, endpoint_id) DO NOTHING
RETURNING account_id, event_id, endpoint_id, body, tries, created_at, lease_token
"""
# Due pending deliveries, leased for `$1` seconds, skipping endpoints whose queue is full.
CLAIM_DUE = """
UPDATE webhook_deliveries d
SET next_try_at = now() + make_interval(secs => $1), lease_token = gen_random_uuid()
FROM webhook_endpoints e
WHERE e.endpoint_id = d.endpoint_id
  AND (d.account_id, d.event_id, d.endpoint_id) IN (
    SELECT account_id, event_id, endpoint_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_try_at <= now() AND NOT (endpoint_id = ANY($3::text[]))
    ORDER BY next_try_at LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING d.account_id, d.event_id, d.endpoint_id, d.body, d.tries, d.created_at,
          d.lease_token, e.url, e.secret, e.deleted_at
"""
# The lease `$5` still ours (in both queries below): pending (not cancelled, not finished),
# unexpired, and not claimed by another worker since.
# Just before a try: leased again for the try, with the tries made so far and when the retry
# window began (the alert's time; created_at for rows older than migration 0015).
RENEW_LEASE = """
UPDATE webhook_deliveries SET next_try_at = now() + make_interval(secs => $4)
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
  AND lease_token = $5 AND next_try_at > now()
RETURNING tries, COALESCE(alert_at, created_at) AS window_from
"""
# The delivery moves on (and the lease ends) first, under the lease; only then is the try
# recorded, in the same transaction, so a lapsed lease records neither. No ON CONFLICT: the
# try number is the holder's, so a clash is a bug, and it rolls the transaction back.
UPDATE_DELIVERY = """
UPDATE webhook_deliveries
SET tries = $4, status = $6, next_try_at = $7, lease_token = NULL,
    finished_at = CASE WHEN $6 = 'pending' THEN NULL ELSE now() END
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
  AND lease_token = $5 AND next_try_at > now()
RETURNING 1
"""
RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (account_id, event_id, endpoint_id, try, status_code, latency_ms,
                              error, attempted_at, next_try_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
CANCEL_DELIVERY = """
UPDATE webhook_deliveries SET status = 'cancelled', next_try_at = NULL, finished_at = now()
WHERE account_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'pending'
"""

# Queued but not tried when the worker stopped: due at once for whoever polls next.
# Only those whose lease is still this worker's.
RELEASE = """
UPDATE webhook_deliveries d SET next_try_at = now(), lease_token = NULL
FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])
    AS r(account_id, event_id, endpoint_id, lease_token)
WHERE d.account_id = r.account_id AND d.event_id = r.event_id
  AND d.endpoint_id = r.endpoint_id AND d.status = 'pending'
  AND d.lease_token = r.lease_token AND d.next_try_at > now()
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
    lease_token: UUID | None = None  # the claim's (None: never claimed; no lease is held)

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
    alert_at: datetime  # when the alert was raised: the retry window counts from it


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
            [r.alert_at for r in rows],
        )
    )


async def claim_due(
    pool: asyncpg.Pool, lease_s: float, limit: int, skip_endpoints: list[str]
) -> list[asyncpg.Record]:
    return list(await pool.fetch(CLAIM_DUE, lease_s, limit, skip_endpoints))


async def renew_lease(
    pool: asyncpg.Pool, delivery: Delivery, lease_s: float
) -> asyncpg.Record | None:
    """`tries` and `window_from` while the lease is still ours; None: drop it, do not send."""
    row: asyncpg.Record | None = await pool.fetchrow(
        RENEW_LEASE, *delivery.key, lease_s, delivery.lease_token
    )
    return row


async def record_outcome(pool: asyncpg.Pool, delivery: Delivery, outcome: Outcome) -> bool:
    """The try and the delivery's next state, if the lease is still ours (else nothing)."""
    async with pool.acquire() as conn, conn.transaction():
        moved = await conn.fetchval(
            UPDATE_DELIVERY, *delivery.key, outcome.try_number, delivery.lease_token,
            outcome.state, outcome.next_try_at,
        )  # fmt: skip
        if moved is None:
            return False
        await conn.execute(
            RECORD_ATTEMPT, *delivery.key, outcome.try_number, outcome.status_code,
            outcome.latency_ms, outcome.error, outcome.attempted_at, outcome.next_try_at,
        )  # fmt: skip
        return True


async def cancel(pool: asyncpg.Pool, key: tuple[str, str, str]) -> None:
    await pool.execute(CANCEL_DELIVERY, *key)


async def release(pool: asyncpg.Pool, deliveries: list[Delivery]) -> None:
    if deliveries:
        rows = [(*d.key, d.lease_token) for d in deliveries]
        await pool.execute(RELEASE, *(list(column) for column in zip(*rows, strict=True)))
