"""The writer reads account snapshots with orjson: the same values json.loads gives, integers
past 64 bits included (those take json.loads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.core.model import (
    AccountSettings,
    AccountState,
    AlertFlags,
    AutoReload,
    Bucket,
    BucketKind,
    Hold,
)
from services.core.snapshot import state_from_json, state_to_json
from services.writer.store import _snapshot_from_text, _snapshot_text

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


# --- the snapshot written: the JSON of `state_to_json`, its instants written by orjson ---------

# Hypothesis takes naive bounds and attaches the zone itself.
INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)
INTS = st.integers(-(2**70), 2**70) | st.integers(-1000, 1000)
BUCKETS = st.builds(
    Bucket,
    grant_id=st.text(max_size=8),
    kind=st.sampled_from(BucketKind),
    priority=st.integers(0, 1_000_000),
    effective_at=INSTANTS,
    expires_at=st.none() | INSTANTS,
    granted_seq=INTS,
    remaining=INTS,
    applies_to=st.none() | st.tuples(st.text(max_size=5)),
    granted=INTS,
    pending=INTS,
    source=st.text(max_size=5),
    expiry_noticed=st.booleans(),
)
STATES = st.builds(
    AccountState,
    account_id=st.just("acct_1"),
    buckets=st.lists(BUCKETS, max_size=3, unique_by=lambda b: b.grant_id).map(tuple),
    holds=st.lists(
        st.builds(Hold, st.text(max_size=5), INTS, INSTANTS),
        max_size=2,
        unique_by=lambda h: h.hold_id,
    ).map(tuple),
    settings=st.builds(
        AccountSettings,
        low_balance_threshold=st.none() | INTS,
        auto_reload=st.none() | st.builds(AutoReload, INTS, INTS, INTS),
        credit_limit=INTS,
        grant_expiring_notice_s=INTS,
    ),
    flags=st.builds(AlertFlags, auto_reload_day=st.none() | st.dates(), auto_reloads_that_day=INTS),
    granted_total=INTS,
    consumed_total=INTS,
)


@given(STATES)
def test_the_snapshot_text_is_the_json_of_state_to_json(state: AccountState) -> None:
    assert json.loads(_snapshot_text(state)) == state_to_json(state)


def test_a_run_of_long_digits_inside_text_takes_the_exact_path_and_reads_the_same() -> None:
    text = json.dumps({"source": "order-12345678901234567890", "totals": [1, 2], "x": "é"})
    assert _snapshot_from_text(text) == json.loads(text)


@given(STATES)
def test_a_snapshot_read_back_is_the_state_it_was_written_from(state: AccountState) -> None:
    text = _snapshot_text(state)
    back = state_from_json(state.account_id, state.seq, state.balance, json.loads(text), {})
    assert back == state
    again = state_from_json(state.account_id, state.seq, state.balance, json.loads(text), {})
    assert again == state  # the shared settings and flags instances read the same
