"""The writer reads account snapshots with orjson: the same values json.loads gives, integers
past 64 bits included (those take json.loads)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from services.writer.store import _snapshot_from_text

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=6))
def test_a_snapshot_reads_as_json_loads_reads_it(snapshot: dict[str, object]) -> None:
    text = json.dumps(snapshot)
    assert _snapshot_from_text(text) == json.loads(text)


def test_an_integer_past_64_bits_stays_exact() -> None:
    text = json.dumps({"totals": [2**70 + 1, -(2**64) - 3]})
    assert _snapshot_from_text(text) == {"totals": [2**70 + 1, -(2**64) - 3]}
