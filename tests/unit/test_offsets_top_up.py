"""StoredOffsets._top_up: a poll that found records takes what a second poll brings within the
top-up time, in offset order and within the poll's record bound; a second poll that finds a
partition out of range keeps the first poll's records of every other partition; a poll during
which a rebalance revoked partitions returns nothing and seeks every assigned partition back to
its stored offset, where it is read again."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import OffsetOutOfRangeError
from aiokafka.structs import TopicPartition

from services.platform import offsets as offsets_module
from services.platform.offsets import StoredOffsets

USAGE_0, USAGE_1 = TopicPartition("usage", 0), TopicPartition("usage", 1)


class ScriptedConsumer:
    """Answers getmany with the scripted results in turn, and notes each call's arguments."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, int]] = []
        self._client = None  # describe_topics is replaced in the tests that reach it
        self.assigned: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Any:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer()
        return answer


def stored() -> StoredOffsets:
    return StoredOffsets(pool=None, consumer_name="test")  # type: ignore[arg-type]


def recording_resets(offsets: StoredOffsets) -> list[set[TopicPartition]]:
    """Replaces `offsets._reset` (a seek to the stored offsets: Kafka and Postgres) by one that
    notes the partitions it was given, in the list returned."""
    reset: list[set[TopicPartition]] = []

    async def fake_reset(_consumer: Any, partitions: set[TopicPartition]) -> set[TopicPartition]:
        reset.append(partitions)
        return partitions

    offsets._reset = fake_reset  # type: ignore[method-assign,assignment]
    return reset


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
    reset = recording_resets(offsets)
    first = {USAGE_0: ["u0-5"], USAGE_1: ["u1-2"]}
    topped = await offsets._top_up(consumer, first, max_records=10, top_up_ms=30)
    assert topped == {USAGE_0: ["u0-5"]}
    assert reset == [{USAGE_1}]


USAGE_ID = uuid.uuid4()


@pytest.fixture
def usage_incarnation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker names `usage` by the topic id being read: the incarnation check passes."""

    async def describe(_client: Any, topics: list[str]) -> dict[str, Any]:
        return {topic: SimpleNamespace(topic_id=USAGE_ID) for topic in topics}

    monkeypatch.setattr(offsets_module, "describe_topics", describe)


def reading_usage() -> StoredOffsets:
    offsets = stored()
    offsets.reading = {("usage", 0): USAGE_ID, ("usage", 1): USAGE_ID}
    return offsets


@pytest.mark.asyncio
@pytest.mark.usefixtures("usage_incarnation")
async def test_a_poll_tops_up_only_when_it_found_records() -> None:
    consumer = ScriptedConsumer({}, {USAGE_0: ["u0-5"]}, {USAGE_1: ["u1-3"]})
    offsets = reading_usage()
    assert await offsets.getmany(consumer, timeout_ms=200, max_records=10, top_up_ms=30) == {}
    assert len(consumer.calls) == 1  # an empty poll waits no more
    polled = await offsets.getmany(consumer, timeout_ms=200, max_records=10, top_up_ms=30)
    assert polled == {USAGE_0: ["u0-5"], USAGE_1: ["u1-3"]}
    assert [c["timeout_ms"] for c in consumer.calls] == [200, 200, 30]


@pytest.mark.asyncio
@pytest.mark.usefixtures("usage_incarnation")
async def test_a_rebalance_during_the_poll_voids_what_it_fetched() -> None:
    offsets = reading_usage()

    async def revoked_meanwhile() -> dict[TopicPartition, list[str]]:
        # The real listener runs while the top-up waits. It revokes a partition this poll holds
        # no record of, so the incarnation check still passes: only the rebalance voids the poll.
        await offsets.listener(consumer).on_partitions_revoked([USAGE_1])
        return {USAGE_0: ["u0-7"]}

    consumer = ScriptedConsumer({USAGE_0: ["u0-5", "u0-6"]}, revoked_meanwhile)
    polled = await offsets.getmany(consumer, timeout_ms=200, max_records=10, top_up_ms=30)
    assert polled == {}


@pytest.mark.asyncio
@pytest.mark.usefixtures("usage_incarnation")
async def test_a_voided_poll_seeks_every_assigned_partition_back_to_its_stored_offset() -> None:
    # aiokafka wakes a waiting poll once the new assignment is installed, before or after the
    # listener's seek to the stored offset: the poll can drain records from the stored offset on.
    # Voided and not sought back, they would be skipped (the position is past them).
    offsets = reading_usage()
    reset = recording_resets(offsets)

    async def rebalanced_and_drained() -> dict[TopicPartition, list[str]]:
        await offsets.listener(consumer).on_partitions_revoked([USAGE_1])
        consumer.assigned = {USAGE_0, USAGE_1}  # assigned again, and read from the stored offset
        return {USAGE_0: ["u0-5", "u0-6"]}

    consumer = ScriptedConsumer({USAGE_0: ["u0-3"]}, rebalanced_and_drained)
    polled = await offsets.getmany(consumer, timeout_ms=200, max_records=10, top_up_ms=30)
    assert polled == {}
    assert reset == [{USAGE_0, USAGE_1}]
