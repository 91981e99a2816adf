"""`UsagePublisher`: contract usage events onto `credits.usage.v1`, idempotent, bounded.

    async with UsagePublisher("localhost:9092", "credits.usage.v1", max_in_flight=500) as usage:
        request_id = await publish_usage(
            usage,
            account_id="acct_42",
            key_id="key_7",
            endpoint="POST /v1/scanner/scan",
            status_code=200,
            credits=1,
            latency_ms=87,
        )  # request_id (uuid4 hex) and occurred_at (now, UTC) are filled in when absent
    # leaving the block waits for every acknowledgement, then stops the producer

Every event is validated through `schemas.usage.UsageEvent` before it is sent, keyed by
`account_id` (so one account's events stay in order on one partition), with an idempotent
`acks=all` producer. At most `max_in_flight` events are unacknowledged at any time: `publish()`
waits for a free slot (back-pressure, never unbounded memory); `flush()` waits for every ack.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.usage import UsageEvent
from services.platform.kafka import new_producer
from services.platform.settings import Settings

log = logging.getLogger("creditledger.producer")
DEFAULT_TOPIC = "credits.usage.v1"


class PublishError(RuntimeError):
    """Kafka refused or never acknowledged one or more events (see `__cause__`)."""


def usage_event(fields: Mapping[str, Any]) -> UsageEvent:
    """The contract event for `fields`, with `request_id` and `occurred_at` filled when absent."""
    complete = dict(fields)
    if not complete.get("request_id"):
        complete["request_id"] = uuid.uuid4().hex
    if complete.get("occurred_at") is None:
        complete["occurred_at"] = datetime.now(UTC)
    return UsageEvent.model_validate(complete)


def encode(event: UsageEvent) -> bytes:
    """The contract's JSON: absent optional fields are left out (no `credits`: priced later)."""
    return event.model_dump_json(exclude_none=True).encode()


class UsagePublisher:
    """An async context manager around an idempotent `acks=all` `AIOKafkaProducer`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = DEFAULT_TOPIC,
        *,
        max_in_flight: int = 1000,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.bootstrap, self.topic, self.max_in_flight = bootstrap, topic, max_in_flight
        self._producer = producer  # built in start(): aiokafka wants a running loop
        self._owns_producer = producer is None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Future[Any]] = set()
        self._errors: list[BaseException] = []
        self.sent = 0  # acknowledged by Kafka
        self.failed = 0  # refused or lost: logged, and raised by the next flush()
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._producer is None:
            # enable_idempotence, acks="all"; TLS/SASL from the CREDITLEDGER_KAFKA_* environment
            self._producer = new_producer(Settings(kafka_bootstrap=self.bootstrap))
        if self._owns_producer:
            await self._producer.start()

    async def publish(self, event: Mapping[str, Any]) -> str:
        """Validate, then send `event`; returns its request_id once Kafka has it buffered.

        Waits while `max_in_flight` events are unacknowledged. A refused event raises
        `pydantic.ValidationError` here and nothing is sent.
        """
        if self._producer is None:
            raise RuntimeError("UsagePublisher is not started (use `async with`)")
        model = usage_event(event)
        value, key = encode(model), model.account_id.encode()
        await self._slots.acquire()
        try:
            ack: asyncio.Future[Any] = await self._producer.send(self.topic, value, key=key)
        except BaseException:
            self._slots.release()
            raise
        self._pending.add(ack)
        self.peak_in_flight = max(self.peak_in_flight, len(self._pending))
        ack.add_done_callback(self._acknowledged)
        return model.request_id

    def _acknowledged(self, ack: asyncio.Future[Any]) -> None:
        self._pending.discard(ack)
        self._slots.release()
        error = None if ack.cancelled() else ack.exception()
        if ack.cancelled() or error is not None:
            self.failed += 1
            self._errors.append(error or asyncio.CancelledError())
            log.error("usage event not acknowledged by Kafka: %r", error)
        else:
            self.sent += 1

    async def flush(self) -> None:
        """Wait for every outstanding ack; raise `PublishError` if any event since the last
        flush was not acknowledged."""
        while self._pending:
            await asyncio.wait(list(self._pending))
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError(f"{len(errors)} usage event(s) not acknowledged") from errors[0]

    async def close(self) -> None:
        """Flush, then stop the producer (it is stopped even when the flush fails)."""
        try:
            await self.flush()
        finally:
            if self._producer is not None and self._owns_producer:
                await self._producer.stop()

    async def __aenter__(self) -> UsagePublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def publish_usage(publisher: UsagePublisher, **fields: Any) -> str:
    """Publish one usage event given as keyword fields; returns its request_id."""
    return await publisher.publish(fields)
