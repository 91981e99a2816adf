"""When a writer batch that passes over offsets is applied (services/writer/gaps.py)."""

from __future__ import annotations

from services.writer.gaps import GapGuard

USAGE, COMMANDS = "usage", "commands"


def test_a_batch_without_gaps_is_applied() -> None:
    assert GapGuard().apply(0, {})


def test_a_gap_is_read_again_then_applied_when_the_re_read_finds_it_again() -> None:
    guard = GapGuard()
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    guard.read_again([0])
    assert guard.apply(0, {USAGE: [(5, 7)]})


def test_a_retried_batch_is_not_a_second_look() -> None:
    guard = GapGuard()  # the commit after the first look failed: the same batch comes again
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    guard.read_again([0])
    assert guard.apply(0, {USAGE: [(5, 7)]})


def test_a_healed_gap_leaves_no_suspicion_behind() -> None:
    guard = GapGuard()
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    guard.read_again([0])
    assert guard.apply(0, {})  # the re-read brought offsets 5 and 6
    guard.read_again([0])  # another re-read, for whatever reason
    assert not guard.apply(0, {USAGE: [(5, 7)]})  # a new race at the same place: read again


def test_a_different_gap_after_the_re_read_is_a_new_suspicion() -> None:
    guard = GapGuard()
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    guard.read_again([0])
    assert not guard.apply(0, {USAGE: [(6, 7)]})
    guard.read_again([0])
    assert guard.apply(0, {USAGE: [(6, 7)]})


def test_each_topic_is_confirmed_by_its_own_first_gap() -> None:
    guard = GapGuard()
    assert not guard.apply(0, {USAGE: [(5, 7)], COMMANDS: [(2, 3)]})
    guard.read_again([0])
    assert guard.apply(0, {USAGE: [(5, 7)]})  # the re-read's batch ended before the other gap
    assert not guard.apply(0, {COMMANDS: [(9, 10)]})  # not the gap suspected for it


def test_a_log_that_showed_a_gap_of_its_own_applies_its_later_gaps_at_once() -> None:
    guard = GapGuard()  # a transactional producer: a marker after every transaction
    assert not guard.apply(0, {USAGE: [(5, 6)]})
    guard.read_again([0])
    assert guard.apply(0, {USAGE: [(5, 6)]})
    assert guard.apply(0, {USAGE: [(9, 10)]})
    assert not guard.apply(1, {USAGE: [(9, 10)]})  # another partition's log: not known so
    assert not guard.apply(0, {COMMANDS: [(3, 4)]})  # nor the other topic's


def test_partitions_are_judged_apart() -> None:
    guard = GapGuard()
    assert not guard.apply(0, {USAGE: [(5, 7)]})
    guard.read_again([1])
    assert not guard.apply(0, {USAGE: [(5, 7)]})  # partition 1's re-read is not 0's
