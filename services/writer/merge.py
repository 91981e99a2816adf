"""Merging the two input topics' partition `p` into one order that a replay reproduces. No I/O.

Usage and commands for one account share a partition index, so the writer sees both streams of
partition `p`. Their interleaving must be a function of the log, or replaying the topics into a
fresh database could write another ledger. Rule: take records by (log timestamp, topic rank,
offset), and never take a head while the other stream might still hold an earlier record: it must
have a buffered head of its own, or a horizon past the head's time. The input topics are created
with `message.timestamp.type=LogAppendTime`, so timestamps are the broker's append times, and a
stream's horizon is a time before which it provably holds no record we have not seen: the runner
takes it from the last fetch response that found the partition caught up, minus a clock margin.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


R = TypeVar("R", bound=Record)


@dataclass
class PartitionMerge(Generic[R]):
    """Buffers of one partition index, one per input topic; `topics` in tie-break rank order."""

    topics: tuple[str, ...]
    pending: dict[str, deque[R]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pending = {topic: deque() for topic in self.topics}

    def add(self, topic: str, records: Sequence[R]) -> None:
        queue = self.pending[topic]
        for record in records:
            if queue and record.offset <= queue[-1].offset:
                # The consumer was sought back (a rebalance resumes from stored offsets): the
                # log from here on is delivered again, so what was buffered is dropped.
                queue.clear()
            queue.append(record)

    def buffered(self) -> int:
        return sum(len(q) for q in self.pending.values())

    def take_ready(self, horizon_ms: Mapping[str, int | None], limit: int) -> list[R]:
        """Up to `limit` records in merge order, stopping where the order is not yet known.

        `horizon_ms[topic]`: no unseen record of that stream was appended before this log time
        (None: nothing is known). An empty stream holds the other back until its horizon has
        passed the head's time: a record of the same millisecond could still rank first.
        """
        assert limit > 0
        taken: list[R] = []
        while len(taken) < limit:
            heads = [(q[0].timestamp, rank, q[0].offset, t) for rank, (t, q) in
                     enumerate(self.pending.items()) if q]  # fmt: skip
            if not heads:
                break
            first = min(heads)
            if any(not q and not _past(horizon_ms[t], first[0]) for t, q in self.pending.items()):
                break  # that stream may still deliver an earlier record
            taken.append(self.pending[first[3]].popleft())
        return taken

    def clear(self) -> None:
        for queue in self.pending.values():
            queue.clear()


def _past(horizon_ms: int | None, timestamp_ms: int) -> bool:
    return horizon_ms is not None and horizon_ms > timestamp_ms
