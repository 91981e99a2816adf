"""decide_run's positional copies are `dataclasses.replace` exactly (the fold's own equality
with one command at a time is tests/unit/test_core_run.py)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.core.model import Bucket
from services.core.run import _with_remaining
from tests.unit.test_writer_snapshot_text import BUCKETS


@given(BUCKETS, st.integers(-(2**70), 2**70))
def test_with_remaining_is_replace(bucket: Bucket, remaining: int) -> None:
    assert _with_remaining(bucket, remaining) == replace(bucket, remaining=remaining)
