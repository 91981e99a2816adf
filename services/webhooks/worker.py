"""The delivery worker: alerts in from Kafka, pending deliveries in Postgres, one lane per
endpoint (a bounded queue and one sender), so a slow or dead endpoint holds up only itself.

1. The consumer (its own group) reads a batch of alerts, records one pending delivery per
   subscribed endpoint (idempotent: a record read again inserts nothing), and only then commits
   the batch's offsets. It never waits on an endpoint: new deliveries go into their lane's
   queue when there is room, else stay pending in Postgres.
2. The poller claims due pending deliveries (retries, ones a full queue left behind, ones a
   restart left leased) for lanes with room.
3. Each lane's sender renews the delivery's lease, tries it once, and records the try and the
   delivery's next state in one transaction. Each step needs the lease this worker was given
   (its token, unexpired): a delivery whose lease lapsed while queued here may have been
   claimed and sent by another worker, so it is dropped without being sent.
4. Nothing one delivery does stops its lane: an unexpected error in a try is recorded as that
   try's error, one anywhere else is logged (the lease lapses and the poller resumes it), and a
   lane whose task ended anyway is started again when it is next offered a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.ledger import AlertMessage
from services.platform.kafka import new_reader
from services.platform.postgres import TRANSIENT_ERRORS, retry_transient
from services.platform.settings import Settings
from services.webhooks import metrics
from services.webhooks.backoff import gives_up, retry_delay_s
from services.webhooks.payload import event_body
from services.webhooks.sender import Answer, new_client, send
from services.webhooks.store import (
    Delivery,
    Endpoint,
    NewDelivery,
    Outcome,
    cancel,
    claim_due,
    insert_pending,
    live_endpoints,
    record_outcome,
    release,
    renew_lease,
)

log = logging.getLogger("creditledger.webhooks")
LEASE_MARGIN_S = 60.0  # beyond the try's own timeout: how long a claimed delivery is ours
CLAIM_MAX = 500
FETCH_MAX_RECORDS = 500
FETCH_TIMEOUT_MS = 200
# An endpoint receives the alerts appended after it was registered; the margin covers clock
# skew between Postgres (created_at) and the process that published the alert.
REGISTERED_MARGIN_MS = 5_000
Key = tuple[str, str, str]


class Lane:
    """One endpoint's bounded queue and its sender task."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize)
        self.task: asyncio.Task[None] | None = None
        self.trying = False  # a try is under way (stopping waits for it)
        self.closing = False


class WebhookWorker:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.lanes: dict[str, Lane] = {}
        # Queued or being tried by this process, with the newest lease it was given (claimed
        # again while queued: the queued copy tries under the new lease).
        self.in_flight: dict[Key, UUID | None] = {}
        self.rng = random.Random()
        self.lease_s = settings.webhook_timeout_s + LEASE_MARGIN_S
        self.client: httpx.AsyncClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        assert self.settings.kafka_bootstrap is not None
        consumer = new_reader(  # the settings' TLS/SASL too (platform/kafka.py)
            self.settings,
            group_id=self.settings.webhooks_consumer_group,
            enable_auto_commit=False,
            # A new group starts at the log's start; each endpoint takes only the alerts
            # appended after it was registered (`_deliveries`).
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        consumer.subscribe([self.settings.alerts_topic])
        await consumer.start()
        self.client = new_client(self.settings.webhook_timeout_s)
        loops = [
            asyncio.create_task(self._consume(consumer, stop)),
            asyncio.create_task(self._poll(stop)),
        ]
        try:
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *loops], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._stop_lanes()
            await consumer.stop()
            await self.client.aclose()

    async def _stop_lanes(self) -> None:
        """Let the tries under way finish (each is bounded by the timeout) so their outcome is
        recorded, then hand what is still queued back to Postgres, due at once: the next worker
        resumes it without waiting for the lease."""
        tasks = []
        for lane in self.lanes.values():
            lane.closing = True
            if lane.task is not None:
                tasks.append(lane.task)
                if not lane.trying:
                    lane.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lanes = self.lanes.values()
        queued = [self._leased(d) for lane in lanes for d in _drained(lane.queue)]
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await release(self.pool, queued)

    # Kafka in -----------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS
            )
            if not batch:
                continue
            records = [r for part in batch.values() for r in part]
            endpoints = await retry_transient(lambda: live_endpoints(self.pool), "endpoints")
            wanted = list(_deliveries(records, endpoints))
            insert = functools.partial(self._insert, wanted)
            inserted = await retry_transient(insert, "pending deliveries")
            await _commit(consumer, batch)
            by_id = {e.endpoint_id: e for e in endpoints}
            for row in inserted:
                self._offer(_delivery(row, by_id[row["endpoint_id"]]))

    async def _insert(self, wanted: list[NewDelivery]) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await insert_pending(conn, wanted, self.lease_s)

    # Postgres in ----------------------------------------------------------------------------

    async def _poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            full = [eid for eid, lane in self.lanes.items() if lane.queue.full()]
            claim = functools.partial(claim_due, self.pool, self.lease_s, CLAIM_MAX, full)
            rows = await retry_transient(claim, "due deliveries")
            for row in rows:
                endpoint = Endpoint(
                    row["endpoint_id"], row["url"], frozenset(), row["secret"], row["created_at"]
                )
                if row["deleted_at"] is not None:
                    await retry_transient(functools.partial(cancel, self.pool, _key(row)), "cancel")
                    metrics.FINISHED.labels("cancelled").inc()
                    continue
                self._offer(_delivery(row, endpoint))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.webhook_poll_interval_s)

    # Lanes ----------------------------------------------------------------------------------

    def _offer(self, delivery: Delivery) -> None:
        """Queue it in its endpoint's lane; a full lane leaves it pending (the poller's)."""
        if delivery.key in self.in_flight:
            self.in_flight[delivery.key] = delivery.lease_token
            return
        lane = self.lanes.get(delivery.endpoint.endpoint_id)
        if lane is None:
            lane = self.lanes[delivery.endpoint.endpoint_id] = Lane(self.settings.webhook_queue_max)
        if lane.task is None or lane.task.done():
            if lane.task is not None and not lane.task.cancelled() and lane.task.exception():
                log.error(
                    "webhook lane %s had stopped; restarting it", delivery.endpoint.endpoint_id
                )
            lane.task = asyncio.create_task(self._drain(lane))
        if lane.queue.full():
            metrics.QUEUED_LATER.inc()
            return
        self.in_flight[delivery.key] = delivery.lease_token
        lane.queue.put_nowait(delivery)

    def _leased(self, delivery: Delivery) -> Delivery:
        """The delivery under the newest lease this worker was given for it."""
        token = self.in_flight.get(delivery.key, delivery.lease_token)
        return dataclasses.replace(delivery, lease_token=token)

    async def _drain(self, lane: Lane) -> None:
        while not lane.closing:
            delivery = await lane.queue.get()
            lane.trying = True
            try:
                await self._try(self._leased(delivery))
            except TRANSIENT_ERRORS as error:
                # Still pending and leased in Postgres: the poller resumes it after the lease.
                log.warning("webhook %s: Postgres failed (%s)", delivery.event_id, error)
            except Exception:
                # Whatever it was, it is this delivery's alone: the lane goes on with the next
                # one, and the poller resumes this one once its lease lapses.
                # (The endpoint by id: its URL may carry a receiver's token.)
                log.exception(
                    "webhook %s to %s failed", delivery.event_id, delivery.endpoint.endpoint_id
                )
            finally:
                lane.trying = False
                self.in_flight.pop(delivery.key, None)

    async def _try(self, delivery: Delivery) -> None:
        leased = await renew_lease(self.pool, delivery, self.lease_s)
        if leased is None:
            # Cancelled (endpoint deleted), finished, or our lease lapsed and another worker
            # may hold it now: sending could deliver it twice.
            return
        try_number = leased["tries"] + 1
        answer = await self._send(delivery)
        now = datetime.now(UTC)
        state, next_try_at = "delivered", None
        if not answer.delivered:
            delay_s = retry_delay_s(try_number, self.settings, self.rng)
            age_s = (now - leased["window_from"]).total_seconds()  # since the alert
            state = "failed" if gives_up(age_s, delay_s, self.settings) else "pending"
            next_try_at = now + timedelta(seconds=delay_s) if state == "pending" else None
        outcome = Outcome(
            try_number, answer.status_code, answer.latency_ms, answer.error, now, state,
            next_try_at,
        )  # fmt: skip
        recorded = await retry_transient(
            lambda: record_outcome(self.pool, delivery, outcome), "try"
        )
        if not recorded:
            log.warning("webhook %s: lease lost during the try; not recorded", delivery.event_id)
        _count(answer.status_code, answer.delivered, answer.latency_ms, state)

    async def _send(self, delivery: Delivery) -> Answer:
        """One try; an error `send` does not expect is this try's error, recorded like one."""
        assert self.client is not None
        started = time.monotonic()
        try:
            return await send(
                self.client, delivery, self.settings.webhooks_allow_private,
                self.settings.webhook_timeout_s,
            )  # fmt: skip
        except Exception as error:
            log.exception("webhook %s: the try failed unexpectedly", delivery.event_id)
            latency_ms = round((time.monotonic() - started) * 1000)
            return Answer(None, f"error: {type(error).__name__}: {error}"[:500], latency_ms)


def _deliveries(
    records: Iterable[ConsumerRecord[bytes, bytes]], endpoints: list[Endpoint]
) -> Iterable[NewDelivery]:
    for record in records:
        alert = _alert(record)
        if alert is None:
            continue
        body = event_body(alert)
        raised_at = _raised_at(record)
        for endpoint in endpoints:
            registered_ms = endpoint.created_at.timestamp() * 1000 - REGISTERED_MARGIN_MS
            if endpoint.wants(alert.type) and record.timestamp >= registered_ms:
                yield NewDelivery(
                    alert.account_id, alert.alert_id, endpoint.endpoint_id, alert.type, body,
                    raised_at,
                )  # fmt: skip


def _raised_at(record: ConsumerRecord[bytes, bytes]) -> datetime:
    """When the writer raised the alert: its record's time on the alerts topic. Not the alert's
    `occurred_at`, which is event time (a late usage event's can be days old) and would spend
    the retry window before the first try. (A record without a time, -1, is older than every
    endpoint and delivered to none.)"""
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _alert(record: ConsumerRecord[bytes, bytes]) -> AlertMessage | None:
    try:
        return AlertMessage.model_validate_json(record.value or b"")
    except ValidationError as error:
        # The writer publishes this topic: anything else on it is not ours to deliver.
        metrics.BAD_ALERTS.inc()
        log.warning(
            "skipping record %s[%d]@%d: not an alert (%s)", record.topic, record.partition,
            record.offset, error.errors()[0]["msg"] if error.errors() else error,
        )  # fmt: skip
        return None


async def _commit(
    consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
) -> None:
    offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
    try:
        await consumer.commit(offsets)
    except KafkaError as error:
        # The deliveries are recorded: the records come again after a rebalance and insert
        # nothing (their rows exist), so a failed commit costs a re-read, never a loss.
        log.warning("alert offsets not committed (%s); they will be read again", error)


def _drained(queue: asyncio.Queue[Delivery]) -> list[Delivery]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _delivery(row: asyncpg.Record, endpoint: Endpoint) -> Delivery:
    return Delivery(
        row["account_id"], row["event_id"], endpoint, bytes(row["body"]), row["lease_token"]
    )


def _key(row: asyncpg.Record) -> Key:
    return (row["account_id"], row["event_id"], row["endpoint_id"])


def _count(status_code: int | None, delivered: bool, latency_ms: int, state: str) -> None:
    outcome = "delivered" if delivered else ("failed" if status_code is not None else "error")
    metrics.ATTEMPTS.labels(outcome).inc()
    metrics.LATENCY.observe(latency_ms / 1000)
    if state != "pending":
        metrics.FINISHED.labels(state).inc()
