"""When a writer batch whose offsets pass over records is applied, and when it is read again.
No I/O.

A batch passes over offsets when its first record of a topic is above the stored offset, or
two of its records of a topic are not consecutive. Our producers are not transactional, so
their logs hold no gap: a gap is then the consumer's position ahead of the stored offsets (a
fetch racing a seek, tests/integration/test_rebalance_void_race.py), and reading the partition
again from the stored offsets heals it. A log can hold gaps of its own, though: a transactional
producer's commit markers and aborted records (read_committed skips them), compaction. So:
- a gap seen for the first time: nothing of the batch is applied, the partition is read again;
- the same first gap of a topic found again, after that re-read: the log's own. The batch is
  applied, its gaps counted as skipped, and that topic's partition is known to hold gaps of its
  own: its later gaps are applied and counted at once (a transactional producer would otherwise
  cost a re-read per transaction), not healed.
Records deleted by retention before a first read are no such gap: the re-read finds the stored
offset below the log start (services/platform/offsets.py `resume_point`).

A suspicion is confirmed only by a batch read after a re-read that followed it (`read_again`
counts them): a batch retried after a failed commit, or a partition revoked and assigned again,
finds its suspicion again without having been read again, and is read again first.
"""

from __future__ import annotations

from collections.abc import Iterable

Gaps = dict[str, list[tuple[int, int]]]  # topic -> the ranges [first, end) passed over
# The end of the writer's line for a batch read again, which the chaos rounds count.
READ_AGAIN_LINE = "read again from the stored offsets"


class GapGuard:
    def __init__(self) -> None:
        self.rereads: dict[int, int] = {}  # partition -> times read again for a gap
        # partition -> (its rereads when suspected, each topic's first gap then)
        self.suspected: dict[int, tuple[int, dict[str, tuple[int, int]]]] = {}
        self.own_gaps: set[tuple[str, int]] = set()  # (topic, partition): the log holds gaps

    def apply(self, partition: int, gaps: Gaps) -> bool:
        """Whether a batch of `partition` with these gaps is applied (False: read it again)."""
        first = {t: found[0] for t, found in gaps.items() if (t, partition) not in self.own_gaps}
        if not first:
            self.suspected.pop(partition, None)
            return True
        rereads = self.rereads.get(partition, 0)
        seen_at, suspected = self.suspected.get(partition, (rereads, {}))
        if seen_at < rereads and all(suspected.get(t) == gap for t, gap in first.items()):
            del self.suspected[partition]
            self.own_gaps.update((t, partition) for t in first)
            return True
        self.suspected[partition] = (rereads, {**suspected, **first})
        return False

    def read_again(self, partitions: Iterable[int]) -> None:
        """The partitions were sought back to their stored offsets for a gap."""
        for partition in partitions:
            self.rereads[partition] = self.rereads.get(partition, 0) + 1
