"""Where a batch's offsets pass over records (services/platform/offsets.py)."""

from __future__ import annotations

import logging

import pytest

from services.platform.offsets import SKIPPED_LINE, count_skipped, skipped_offsets


def test_a_batch_from_where_the_consumer_stood_skips_nothing() -> None:
    assert skipped_offsets(5, [5, 6, 7]) == []
    assert skipped_offsets(5, []) == []


def test_the_ranges_passed_over_before_and_between_records() -> None:
    assert skipped_offsets(5, [8, 9, 12]) == [(5, 8), (10, 12)]
    assert skipped_offsets(0, [0, 2]) == [(1, 2)]


def test_an_offset_delivered_again_is_no_gap() -> None:
    assert skipped_offsets(0, [0, 0, 1, 2]) == []
    assert skipped_offsets(0, [0, 1, 0, 1, 3]) == [(2, 3)]
    assert skipped_offsets(4, [3, 4]) == []


@pytest.mark.skips_offsets  # it counts two, on purpose
def test_the_skipped_line_names_what_the_chaos_rounds_look_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="creditledger.offsets"):
        count_skipped("writer", "usage", 3, [(5, 7)])
    (line,) = caplog.messages
    assert SKIPPED_LINE in line and "usage[3]" in line and "5..6" in line
