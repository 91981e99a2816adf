"""Packed outbox rows (migration 0018): the messages come out as they went in, in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.writer.outbox import pack, unpack

MESSAGES = st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=3000)), max_size=50)


@given(MESSAGES)
def test_unpack_gives_back_the_packed_messages_in_order(
    messages: list[tuple[bytes, bytes]],
) -> None:
    assert list(unpack(pack(messages), len(messages))) == messages


def test_a_row_holding_more_than_its_count_is_refused() -> None:
    packed = pack([(b"acct_1", b"{}"), (b"acct_2", b"{}")])
    with pytest.raises(AssertionError):
        list(unpack(packed, 1))
