"""StoredOffsets._top_up: a poll that found records takes what a second poll brings within the
top-up time, in offset order and within the poll's record bound; a second poll that finds a
partition out of range keeps the first poll's records of every other partition."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

from services.platform.offsets import StoredOffsets

USAGE_0, USAGE_1 = TopicPartition("usage", 0), TopicPartition("usage", 1)


class ScriptedConsumer:
    """Answers getmany with the scripted results in turn, and notes each call's arguments."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Any:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def stored() -> StoredOffsets:
    return StoredOffsets(pool=None, consumer_name="test")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_what_arrives_within_the_top_up_joins_the_poll_in_offset_order() -> None:
    consumer = ScriptedConsumer({USAGE_0: ["u0-7"], USAGE_1: ["u1-3"]})
    first = {USAGE_0: ["u0-5", "u0-6"]}
    topped = await stored()._top_up(consumer, first, max_records=10, top_up_ms=30)
    assert topped == {USAGE_0: ["u0-5", "u0-6", "u0-7"], USAGE_1: ["u1-3"]}
    assert consumer.calls == [{"timeout_ms": 30, "max_records": 8}]  # the room left


@pytest.mark.asyncio
async def test_a_full_poll_or_no_top_up_time_asks_no_more() -> None:
    consumer = ScriptedConsumer()
    full = {USAGE_0: ["u0-5", "u0-6"]}
    assert await stored()._top_up(consumer, full, max_records=2, top_up_ms=30) == full
    assert await stored()._top_up(consumer, full, max_records=10, top_up_ms=0) == full
    assert consumer.calls == []


@pytest.mark.asyncio
async def test_an_out_of_range_top_up_drops_only_the_partitions_it_resets() -> None:
    consumer = ScriptedConsumer(OffsetOutOfRangeError({USAGE_1: 9}))
    offsets = stored()
    reset: list[set[TopicPartition]] = []

    async def fake_reset(_consumer: Any, partitions: set[TopicPartition]) -> set[TopicPartition]:
        reset.append(partitions)
        return partitions

    offsets._reset = fake_reset  # type: ignore[method-assign,assignment]
    first = {USAGE_0: ["u0-5"], USAGE_1: ["u1-2"]}
    topped = await offsets._top_up(consumer, first, max_records=10, top_up_ms=30)
    assert topped == {USAGE_0: ["u0-5"]}
    assert reset == [{USAGE_1}]
