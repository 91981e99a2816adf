"""The delivery worker's leases, lanes and retry window on a real Postgres, with two worker
instances against one namespace (as two `serve` replicas would be): a worker whose lease lapsed
and was claimed by the other sends nothing and records nothing; one bad delivery cannot stop
its endpoint's lane; the retry window counts from when the alert was raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.webhooks import worker as worker_module
from services.webhooks.sender import Answer
from services.webhooks.store import (
    Delivery,
    Endpoint,
    NewDelivery,
    Outcome,
    claim_due,
    insert_pending,
    record_outcome,
    release,
    renew_lease,
)
from services.webhooks.worker import WebhookWorker
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
ACCOUNT = "acct_leases"
URL = "http://127.0.0.1:9/hooks"  # never connected to: the workers' clients are mocked


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert namespace.database_url is not None
    created = await create_pool(namespace.database_url, 6)
    yield created
    await created.close()


class Counting:
    """A receiver standing in for the endpoint: every request, answered `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)


def new_worker(settings: Settings, pool: asyncpg.Pool, receiver: Counting) -> WebhookWorker:
    worker = WebhookWorker(settings.model_copy(update={"webhooks_allow_private": True}), pool)
    worker.client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    return worker


async def new_endpoint(pool: asyncpg.Pool, endpoint_id: str, url: str = URL) -> Endpoint:
    # Straight into the table: the delivery side must cope with what registration once let in.
    created_at = await pool.fetchval(
        "INSERT INTO webhook_endpoints (endpoint_id, url, events, secret)"
        " VALUES ($1, $2, '{}', 'whsec_test') RETURNING created_at",
        endpoint_id, url,
    )  # fmt: skip
    return Endpoint(endpoint_id, url, frozenset(), "whsec_test", created_at)


async def new_delivery(
    pool: asyncpg.Pool,
    endpoint: Endpoint,
    event_id: str,
    lease_s: float,
    raised_at: datetime | None = None,
) -> Delivery:
    """Recorded and leased as the consumer records one."""
    wanted = NewDelivery(
        ACCOUNT, event_id, endpoint.endpoint_id, "depleted", b'{"id":"%s"}' % event_id.encode(),
        raised_at or datetime.now(UTC),
    )  # fmt: skip
    async with pool.acquire() as conn:
        [row] = await insert_pending(conn, [wanted], lease_s)
    return worker_module._delivery(row, endpoint)


async def lapse(pool: asyncpg.Pool, event_id: str) -> None:
    """The lease runs out (as it would while the item waited in a long lane queue)."""
    await pool.execute(
        "UPDATE webhook_deliveries SET next_try_at = now() - interval '1 second'"
        " WHERE event_id = $1",
        event_id,
    )


async def state(pool: asyncpg.Pool, event_id: str) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT status, tries, next_try_at, lease_token,"
        " (SELECT count(*) FROM webhook_attempts a WHERE a.event_id = d.event_id) AS attempts"
        " FROM webhook_deliveries d WHERE event_id = $1",
        event_id,
    )
    assert row is not None, event_id
    return row


async def test_a_lapsed_lease_claimed_by_another_worker_is_dropped_without_sending(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    receiver = Counting(500)  # each try fails, so the delivery stays pending and is retried
    first, second = new_worker(namespace, pool, receiver), new_worker(namespace, pool, receiver)
    endpoint = await new_endpoint(pool, "we_1ease")
    queued_in_first = await new_delivery(pool, endpoint, "e1", first.lease_s)
    await lapse(pool, "e1")
    [claimed] = await claim_due(pool, second.lease_s, 10, [])
    claimed_by_second = worker_module._delivery(claimed, endpoint)
    assert claimed_by_second.lease_token != queued_in_first.lease_token

    await second._try(claimed_by_second)
    after_second = await state(pool, "e1")
    assert len(receiver.requests) == 1
    assert after_second["tries"] == 1 and after_second["attempts"] == 1

    await first._try(queued_in_first)  # its lease is gone: no request, nothing recorded
    assert len(receiver.requests) == 1, "the first worker sent a delivery it no longer held"
    after_first = await state(pool, "e1")
    assert after_first["tries"] == 1 and after_first["attempts"] == 1
    assert after_first["next_try_at"] == after_second["next_try_at"]


async def test_an_expired_lease_of_a_worker_renews_nothing_records_nothing_releases_nothing(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    endpoint = await new_endpoint(pool, "we_5a1e")
    mine = await new_delivery(pool, endpoint, "e2", 70)
    assert await renew_lease(pool, mine, 70) is not None  # held: renewed
    await lapse(pool, "e2")
    assert await renew_lease(pool, mine, 70) is None, "an expired lease is not renewed"
    [claimed] = await claim_due(pool, 70, 10, [])
    theirs = worker_module._delivery(claimed, endpoint)
    now = datetime.now(UTC)
    late = Outcome(1, 500, 3, "HTTP 500", now, "pending", now + timedelta(seconds=5))
    assert not await record_outcome(pool, mine, late), "recorded under another's lease"
    await release(pool, [mine])
    held = await state(pool, "e2")
    assert held["attempts"] == 0 and held["tries"] == 0
    assert held["lease_token"] == theirs.lease_token and held["next_try_at"] > now
    assert await renew_lease(pool, mine, 70) is None
    assert await renew_lease(pool, theirs, 70) is not None
    assert await record_outcome(pool, theirs, late)
    recorded = await state(pool, "e2")
    assert recorded["attempts"] == 1 and recorded["tries"] == 1
    assert recorded["lease_token"] is None, "a recorded try ends the lease"


async def test_a_url_no_client_can_parse_is_a_recorded_refused_try_and_the_lane_goes_on(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    receiver = Counting(200)
    worker = new_worker(namespace, pool, receiver)
    bad = await new_endpoint(pool, "we_bad", "https://\u00adfoo.com/")
    for event_id in ("b1", "b2"):
        worker._offer(await new_delivery(pool, bad, event_id, worker.lease_s))

    async def both_tried() -> bool:
        rows = await pool.fetch(
            "SELECT event_id, error FROM webhook_attempts WHERE endpoint_id = 'we_bad'"
        )
        return {r["event_id"] for r in rows} == {"b1", "b2"}

    lane = worker.lanes["we_bad"]
    assert lane.task is not None
    await wait_until(both_tried, "both deliveries to the bad URL to be tried", 10, [lane.task])
    errors = await pool.fetch("SELECT error FROM webhook_attempts WHERE endpoint_id = 'we_bad'")
    assert all(r["error"].startswith("refused: ") for r in errors), errors
    b1 = await state(pool, "b1")
    assert b1["status"] == "pending" and b1["next_try_at"] is not None, "retried later"
    assert not lane.task.done() and receiver.requests == []
    lane.closing = True
    lane.task.cancel()


async def test_an_unexpected_error_is_recorded_as_the_try_and_a_dead_lane_restarts(
    namespace: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def send_failing_once(
        client: httpx.AsyncClient, delivery: Delivery, allow_private: bool, timeout_s: float
    ) -> Answer:
        calls.append(delivery.event_id)
        if len(calls) == 1:
            raise RuntimeError("unforeseen")
        return Answer(200, None, 1)

    monkeypatch.setattr(worker_module, "send", send_failing_once)
    worker = new_worker(namespace, pool, Counting(200))
    endpoint = await new_endpoint(pool, "we_d1e")

    async def died() -> None:
        raise RuntimeError("a lane task that ended")

    dead = asyncio.create_task(died())
    await asyncio.gather(dead, return_exceptions=True)
    worker.lanes["we_d1e"] = worker_module.Lane(namespace.webhook_queue_max)
    worker.lanes["we_d1e"].task = dead
    for event_id in ("u1", "u2"):
        worker._offer(await new_delivery(pool, endpoint, event_id, worker.lease_s))

    async def both_recorded() -> bool:
        return {r["status"] for r in [await state(pool, "u1"), await state(pool, "u2")]} == {
            "pending",
            "delivered",
        } and (await state(pool, "u1"))["attempts"] == 1

    lane = worker.lanes["we_d1e"]
    assert lane.task is not dead, "a lane whose task died is started again"
    assert lane.task is not None
    await wait_until(both_recorded, "the error try and the delivered one", 10, [lane.task])
    error = await pool.fetchval("SELECT error FROM webhook_attempts WHERE event_id = 'u1'")
    assert error == "error: RuntimeError: unforeseen"
    assert (await state(pool, "u2"))["status"] == "delivered"
    lane.closing = True
    lane.task.cancel()


async def test_the_retry_window_counts_from_when_the_alert_was_raised(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    receiver = Counting(503)
    worker = new_worker(namespace, pool, receiver)
    endpoint = await new_endpoint(pool, "we_w1nd")
    window_s = namespace.webhook_retry_window_s
    # Raised almost a window ago, recorded only now (the worker was down): no time for a retry.
    old = datetime.now(UTC) - timedelta(seconds=window_s - 1)
    await worker._try(await new_delivery(pool, endpoint, "w-old", worker.lease_s, old))
    await worker._try(await new_delivery(pool, endpoint, "w-new", worker.lease_s))
    gave_up, retried = await state(pool, "w-old"), await state(pool, "w-new")
    assert gave_up["status"] == "failed" and gave_up["next_try_at"] is None
    assert retried["status"] == "pending" and retried["next_try_at"] is not None
    assert len(receiver.requests) == 2


async def busy() -> None:
    await asyncio.Event().wait()


async def test_claimed_again_by_the_same_worker_the_queued_copy_tries_under_the_new_lease(
    namespace: Settings, pool: asyncpg.Pool
) -> None:
    receiver = Counting(200)
    worker = new_worker(namespace, pool, receiver)
    endpoint = await new_endpoint(pool, "we_5e1f")
    lane = worker.lanes["we_5e1f"] = worker_module.Lane(namespace.webhook_queue_max)
    lane.task = asyncio.create_task(busy())  # a busy sender: the copy waits in the queue
    try:
        worker._offer(await new_delivery(pool, endpoint, "s1", worker.lease_s))
        await lapse(pool, "s1")  # it waited in the queue past its lease ...
        [claimed] = await claim_due(pool, worker.lease_s, 10, [])  # ... and our poller took it
        worker._offer(worker_module._delivery(claimed, endpoint))
        [queued] = worker_module._drained(lane.queue)
        await worker._try(worker._leased(queued))
        assert len(receiver.requests) == 1 and (await state(pool, "s1"))["status"] == "delivered"
    finally:
        lane.task.cancel()
