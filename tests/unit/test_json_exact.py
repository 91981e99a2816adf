"""`loads_exact` reads what json.loads reads, integers past 64 bits included (orjson alone would
turn them into floats)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from services.platform.json_exact import loads_exact
from services.platform.postgres import _jsonb_decode, _jsonb_encode

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(values)
def test_equal_to_json_loads(value: object) -> None:
    text = json.dumps(value).encode()
    assert loads_exact(text) == json.loads(text)
    assert repr(loads_exact(text)) == repr(json.loads(text))  # 1 stays 1, not 1.0


def test_a_huge_integer_stays_exact_through_the_jsonb_codec() -> None:
    huge = {"totals": [2**70, -(2**64) - 1], "small": 5}
    assert loads_exact(json.dumps(huge).encode()) == huge
    assert _jsonb_decode(_jsonb_encode(huge)) == huge
