"""Token buckets (services/api/ratelimit.py): a burst, a refill rate, a bounded LRU of callers;
peeking at a caller never charged answers at once and tracks nothing."""

from __future__ import annotations

from services.api.ratelimit import TokenBuckets


def test_a_caller_gets_its_burst_then_waits_for_the_refill() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("ip", now=10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("ip", now=10.0) == 0.5  # one token at 2 a second
    assert buckets.peek("ip", now=10.0) == 0.5
    assert buckets.peek("ip", now=10.5) == 0.0
    assert buckets.take("ip", now=10.5) == 0.0


def test_peeking_at_an_unknown_caller_answers_at_once_and_tracks_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1)
    assert buckets.peek("never-failed", now=1.0) == 0.0
    assert len(buckets) == 0
    buckets.take("failed", now=1.0)
    assert buckets.peek("failed", now=1.0) == 1.0 and len(buckets) == 1


def test_callers_are_bounded_oldest_first() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_callers=2)
    for caller in ("a", "b", "c"):
        buckets.take(caller, now=0.0)
    assert len(buckets) == 2
    assert buckets.peek("a", now=0.0) == 0.0  # evicted: a full bucket again
    assert buckets.peek("c", now=0.0) == 1.0
