"""The merge horizon ignores how long the event loop sat on a fetch response (real Kafka).

A record appended while the loop is blocked, after the broker built an empty response the loop
has not processed yet, is not in that response: a horizon from the processing time would claim
the partition held nothing before a time past that record's (the hazard `FetchClock` removes).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiokafka.structs import TopicPartition

from services.platform.fetch_clock import FetchClock
from services.platform.kafka import ensure_topics, new_producer, new_reader
from services.platform.settings import Settings

pytestmark = pytest.mark.integration

STALL_S = 1.0
APPEND_AFTER_S = 0.4  # into the stall: after the in-flight empty fetch was answered
DEADLINE_S = 30.0


def _append_later(settings: Settings, ready: threading.Event, go: threading.Event) -> list[int]:
    """In a thread with its own loop: once `go` is set, wait, append one record; its
    LogAppendTime goes into the returned list."""
    stamps: list[int] = []

    async def run() -> None:
        producer = new_producer(settings)
        await producer.start()
        try:
            ready.set()
            await asyncio.to_thread(go.wait, DEADLINE_S)
            await asyncio.sleep(APPEND_AFTER_S)
            sent = await producer.send_and_wait(settings.commands_topic, b"{}", partition=0)
            stamps.append(sent.timestamp)
        finally:
            await producer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    return stamps


async def _caught_up(consumer: object, clock: FetchClock, tp: TopicPartition) -> bool:
    position = await consumer.position(tp)  # type: ignore[attr-defined]
    highwater = consumer.highwater(tp)  # type: ignore[attr-defined]
    return highwater is not None and position >= highwater and tp in clock.sent_ms


async def test_a_record_appended_while_the_loop_is_blocked_stays_above_the_horizon(
    namespace: Settings,
) -> None:
    await ensure_topics(namespace, timeout_s=30)
    tp = TopicPartition(namespace.commands_topic, 0)
    consumer = new_reader(
        namespace, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=100, isolation_level="read_committed",
    )  # fmt: skip
    consumer.assign([tp])
    await consumer.start()
    clock = FetchClock()
    clock.install(consumer)
    ready, go = threading.Event(), threading.Event()
    stamps = _append_later(namespace, ready, go)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (ready.is_set() and await _caught_up(consumer, clock, tp)):
            assert time.monotonic() < deadline, "the reader never caught up"
            await asyncio.sleep(0.01)
        go.set()
        # The point of the test: the loop blocked (as by a batch's Python work), responses
        # waiting in the socket.
        time.sleep(STALL_S)  # noqa: ASYNC251
        late_stamps = 0
        while not stamps or await _caught_up(consumer, clock, tp):
            assert time.monotonic() < deadline, "the appended record was never fetched"
            if stamps:
                appended_ms = stamps[0]
                horizon_ms = clock.horizon_ms(consumer, tp)
                assert horizon_ms is not None and horizon_ms <= appended_ms, (
                    horizon_ms,
                    appended_ms,
                )
                polled_ms = consumer.last_poll_timestamp(tp)
                late_stamps += polled_ms is not None and polled_ms > appended_ms
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    # aiokafka's own stamp would have claimed the record's time (when the stall happened to
    # hold a response): reported, since it depends on where the stall fell among fetches.
    print(f"responses stamped past the unseen record by processing time: {late_stamps}")
