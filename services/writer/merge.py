"""Merging the two input topics' partition `p` into one order that a replay reproduces. No I/O.

Usage and commands for one account share a partition index, so the writer sees both streams of
partition `p`. Their interleaving must be a function of the log, or replaying the topics into a
fresh database could write another ledger. Rule: take records by (log timestamp, topic rank,
offset), and never take a head while the other stream might still hold an earlier record: it must
have a buffered head of its own, or be caught up with its partition's end. The input topics are
created with `message.timestamp.type=LogAppendTime`, so timestamps are the broker's append times:
a record appended after the check cannot carry an earlier time (up to a stale end-of-partition
reading, a window of one fetch; see services/writer/README.md).
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

    def take_ready(self, caught_up: Mapping[str, bool], limit: int) -> list[R]:
        """Up to `limit` records in merge order, stopping where the order is not yet known."""
        assert limit > 0
        taken: list[R] = []
        while len(taken) < limit:
            if any(not q and not caught_up[t] for t, q in self.pending.items()):
                break  # that stream may still deliver an earlier record
            heads = [(q[0].timestamp, rank, q[0].offset, t) for rank, (t, q) in
                     enumerate(self.pending.items()) if q]  # fmt: skip
            if not heads:
                break
            topic = min(heads)[3]
            taken.append(self.pending[topic].popleft())
        return taken

    def clear(self) -> None:
        for queue in self.pending.values():
            queue.clear()
