"""When each partition's last fetch request was sent: a lower bound for what the log held.

The writer's merge needs, per quiet partition, a time before which the partition holds no record
it has not seen (services/writer/merge.py). aiokafka stamps a partition when it *processes* the
fetch response (`last_poll_timestamp`): on an event loop busy with a batch, that is later than
the response was built by as long as the loop was busy, and a record appended in between would
fall below the horizon unseen: the live order would then differ from the order a replay
computes. The time the request was *sent* is before the broker built the response, whatever the
loop does afterwards, so it bounds what the log held without depending on the loop.

aiokafka exposes no hook for it: `install` wraps the fetcher's per-request coroutine (looked up
on the instance each time it starts a request). Pinned by requirements.lock; a test holds it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


class FetchClock:
    """`sent_ms[tp]`: when the request of the last response that stamped `tp` was sent."""

    def __init__(self) -> None:
        self.sent_ms: dict[TopicPartition, int] = {}

    def install(self, consumer: AIOKafkaConsumer) -> None:
        """After `consumer.start()`. Requests started before it stamp nothing here (their
        partitions simply have no horizon until the next response)."""
        fetcher: Any = consumer._fetcher
        assert fetcher is not None, "install after consumer.start()"
        original: Callable[..., Awaitable[Any]] = fetcher._proc_fetch_request

        async def timed(assignment: Any, node_id: int, request: Any) -> Any:
            sent_ms = int(time.time() * 1000)
            result = await original(assignment, node_id, request)
            self._stamp(assignment, request, sent_ms)
            return result

        fetcher._proc_fetch_request = timed

    def _stamp(self, assignment: Any, request: Any, sent_ms: int) -> None:
        # Only partitions this response stamped (aiokafka sets `timestamp` on a partition it
        # read without error, at or after `sent_ms`); one fetch is in flight per broker.
        for topic, partitions in request.topics:
            for partition_info in partitions:
                tp = TopicPartition(topic, partition_info[0])
                state = assignment.state_value(tp)
                stamped = None if state is None else state.timestamp
                if stamped is not None and stamped >= sent_ms:
                    self.sent_ms[tp] = sent_ms

    def horizon_ms(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
        """The earlier of aiokafka's stamp and the request's send time, or None."""
        polled_ms: int | None = consumer.last_poll_timestamp(tp)
        sent_ms = self.sent_ms.get(tp)
        if polled_ms is None or sent_ms is None:
            return None
        return min(polled_ms, sent_ms)
