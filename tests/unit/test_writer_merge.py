"""The merge of one partition index of the two input topics into one replayable order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.writer.merge import PartitionMerge

COMMANDS = "credits.commands.v1"
USAGE = "credits.usage.v1"
TOPICS = (COMMANDS, USAGE)  # rank order, as the writer builds it: commands first on a tie
RANK = {topic: rank for rank, topic in enumerate(TOPICS)}
EVER = 2**62  # a horizon past every record: the stream is caught up
BOTH_CAUGHT_UP: dict[str, int | None] = {COMMANDS: EVER, USAGE: EVER}

BOUNDED = settings(max_examples=300, deadline=None, database=None)


@dataclass(frozen=True, slots=True)
class Rec:
    topic: str
    offset: int
    timestamp: int


def recs(topic: str, *pairs: tuple[int, int]) -> list[Rec]:
    """Records of `topic` from (offset, timestamp) pairs."""
    return [Rec(topic, offset, timestamp) for offset, timestamp in pairs]


def keys(records: Sequence[Rec]) -> list[tuple[str, int]]:
    return [(r.topic, r.offset) for r in records]


def merge_of(**streams: list[Rec]) -> PartitionMerge[Rec]:
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    for records in streams.values():
        if records:
            merge.add(records[0].topic, records)
    return merge


def test_records_come_out_by_timestamp_across_topics() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (10, 2), (11, 5), (12, 9)),
        usage=recs(USAGE, (40, 1), (41, 3), (42, 4), (43, 10)),
    )
    taken = merge.take_ready(BOTH_CAUGHT_UP, 100)
    assert keys(taken) == [
        (USAGE, 40),
        (COMMANDS, 10),
        (USAGE, 41),
        (USAGE, 42),
        (COMMANDS, 11),
        (COMMANDS, 12),
        (USAGE, 43),
    ]
    assert merge.buffered() == 0


def test_equal_timestamps_go_by_topic_rank_then_offset() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (7, 5), (8, 5)),
        usage=recs(USAGE, (3, 5), (4, 5), (5, 6)),
    )
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 100)) == [
        (COMMANDS, 7),
        (COMMANDS, 8),
        (USAGE, 3),
        (USAGE, 4),
        (USAGE, 5),
    ]


def test_rank_follows_the_order_topics_are_given_in() -> None:
    merge: PartitionMerge[Rec] = PartitionMerge((USAGE, COMMANDS))
    merge.add(COMMANDS, recs(COMMANDS, (1, 5)))
    merge.add(USAGE, recs(USAGE, (9, 5)))
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 10)) == [(USAGE, 9), (COMMANDS, 1)]


def test_nothing_is_taken_while_an_empty_stream_is_not_caught_up() -> None:
    merge = merge_of(usage=recs(USAGE, (0, 1), (1, 2)))
    assert merge.take_ready({COMMANDS: None, USAGE: EVER}, 100) == []
    assert merge.buffered() == 2


def test_taking_stops_where_a_stream_runs_dry_and_is_not_caught_up() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (0, 4)),
        usage=recs(USAGE, (0, 1), (1, 2), (2, 6), (3, 7)),
    )
    not_caught_up = {COMMANDS: None, USAGE: None}
    assert keys(merge.take_ready(not_caught_up, 100)) == [(USAGE, 0), (USAGE, 1), (COMMANDS, 0)]
    assert merge.take_ready(not_caught_up, 100) == []
    assert merge.buffered() == 2
    # A later command may still be earlier than usage at 6: once it arrives it goes first.
    merge.add(COMMANDS, recs(COMMANDS, (1, 5)))
    assert keys(merge.take_ready(not_caught_up, 100)) == [(COMMANDS, 1)]


def test_a_caught_up_empty_stream_does_not_hold_the_other_back() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (0, 4)),
        usage=recs(USAGE, (0, 1), (1, 2), (2, 6), (3, 7)),
    )
    taken = merge.take_ready({COMMANDS: EVER, USAGE: None}, 100)
    assert keys(taken) == [(USAGE, 0), (USAGE, 1), (COMMANDS, 0), (USAGE, 2), (USAGE, 3)]


def test_the_stream_with_a_buffered_head_needs_not_be_caught_up() -> None:
    merge = merge_of(commands=recs(COMMANDS, (0, 3)), usage=recs(USAGE, (0, 1)))
    assert keys(merge.take_ready({COMMANDS: None, USAGE: EVER}, 100)) == [
        (USAGE, 0),
        (COMMANDS, 0),
    ]


def test_empty_merge_takes_nothing() -> None:
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    assert merge.take_ready(BOTH_CAUGHT_UP, 10) == []
    assert merge.buffered() == 0


def test_take_ready_respects_the_limit_and_resumes_where_it_stopped() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (0, 2), (1, 4)),
        usage=recs(USAGE, (0, 1), (1, 3), (2, 5)),
    )
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 2)) == [(USAGE, 0), (COMMANDS, 0)]
    assert merge.buffered() == 3
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 1)) == [(USAGE, 1)]
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 5)) == [(COMMANDS, 1), (USAGE, 2)]
    assert merge.take_ready(BOTH_CAUGHT_UP, 5) == []


def test_limit_must_be_positive() -> None:
    merge = merge_of(usage=recs(USAGE, (0, 1)))
    with pytest.raises(AssertionError):
        merge.take_ready(BOTH_CAUGHT_UP, 0)


def test_records_delivered_again_after_a_seek_replace_the_stale_buffer() -> None:
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    merge.add(USAGE, recs(USAGE, (10, 1), (11, 2), (12, 3), (13, 4)))
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 1)) == [(USAGE, 10)]
    # Sought back to the stored offset 11: the log is delivered again from there.
    merge.add(USAGE, recs(USAGE, (11, 2), (12, 3), (13, 4), (14, 5)))
    assert merge.buffered() == 4
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 100)) == [
        (USAGE, 11),
        (USAGE, 12),
        (USAGE, 13),
        (USAGE, 14),
    ]


def test_a_regression_inside_one_delivery_keeps_only_what_follows_it() -> None:
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    merge.add(USAGE, recs(USAGE, (5, 1), (6, 2), (7, 3), (6, 2), (7, 3)))
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 100)) == [(USAGE, 6), (USAGE, 7)]


def test_a_regression_in_one_topic_leaves_the_other_buffered() -> None:
    merge = merge_of(
        commands=recs(COMMANDS, (0, 9), (1, 10)),
        usage=recs(USAGE, (3, 1), (4, 2)),
    )
    merge.add(USAGE, recs(USAGE, (3, 1)))
    assert merge.buffered() == 3
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 100)) == [
        (USAGE, 3),
        (COMMANDS, 0),
        (COMMANDS, 1),
    ]


def test_offsets_that_move_forward_with_gaps_are_not_a_regression() -> None:
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    merge.add(USAGE, recs(USAGE, (0, 1), (2, 1)))
    merge.add(USAGE, recs(USAGE, (5, 2)))
    assert keys(merge.take_ready(BOTH_CAUGHT_UP, 100)) == [(USAGE, 0), (USAGE, 2), (USAGE, 5)]


def test_clear_drops_everything_buffered() -> None:
    merge = merge_of(commands=recs(COMMANDS, (0, 1)), usage=recs(USAGE, (0, 1), (1, 2)))
    assert merge.buffered() == 3
    merge.clear()
    assert merge.buffered() == 0
    assert merge.take_ready(BOTH_CAUGHT_UP, 10) == []


# --- property: chunking and interleaving never change the order --------------------------------


def stream(topic: str) -> st.SearchStrategy[list[Rec]]:
    """A partition's records: offsets increase (with gaps), append times never decrease."""

    def build(first: int, start: int, steps: list[tuple[int, int]]) -> list[Rec]:
        records: list[Rec] = []
        offset, timestamp = first, start
        for offset_step, time_step in steps:
            records.append(Rec(topic, offset, timestamp))
            offset += offset_step
            timestamp += time_step
        return records

    steps = st.lists(st.tuples(st.integers(1, 2), st.integers(0, 3)), max_size=25)
    return st.builds(build, st.integers(0, 1_000), st.integers(0, 5), steps)


@BOUNDED
@given(st.fixed_dictionaries({COMMANDS: stream(COMMANDS), USAGE: stream(USAGE)}), st.data())
def test_merge_order_does_not_depend_on_chunking_or_interleaving(
    streams: dict[str, list[Rec]], data: st.DataObject
) -> None:
    expected = sorted(
        (r for records in streams.values() for r in records),
        key=lambda r: (r.timestamp, RANK[r.topic], r.offset),
    )
    merge: PartitionMerge[Rec] = PartitionMerge(TOPICS)
    undelivered = {topic: list(records) for topic, records in streams.items()}
    taken: list[Rec] = []
    while any(undelivered.values()):
        topic = data.draw(st.sampled_from([t for t in TOPICS if undelivered[t]]))
        size = data.draw(st.integers(1, 5))
        merge.add(topic, undelivered[topic][:size])
        del undelivered[topic][:size]
        # A horizon never passes a record not delivered yet; it may lag behind, or be unknown.
        horizon: dict[str, int | None] = {
            t: data.draw(
                st.none() | st.integers(0, min((r.timestamp for r in undelivered[t]), default=EVER))
            )
            for t in TOPICS
        }
        taken += merge.take_ready(horizon, data.draw(st.integers(1, 6)))
        assert taken == expected[: len(taken)]
    while merge.buffered():
        limit = data.draw(st.integers(1, 6))
        ready = merge.take_ready(BOTH_CAUGHT_UP, limit)
        assert 0 < len(ready) <= limit
        taken += ready
    assert taken == expected
