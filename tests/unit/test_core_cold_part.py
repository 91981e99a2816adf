"""The writer skips an account's snapshot when its cold part did not change (`same_cold_part`),
writing only the hot columns (migration 0021). Skipping must be safe: whenever the function says
"unchanged", the old snapshot's cold part encodes exactly as the new one's, and the old snapshot
with the new hot columns reads back as the new state. And it must fire on what a usage event
changes, or it saves nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from services.core.model import AccountState, AlertFlags, Bucket, BucketKind
from services.core.snapshot import bucket_remaining, same_cold_part, state_from_json, state_to_json
from tests.unit.test_writer_snapshot_text import INSTANTS, INTS, STATES

SMALL = st.integers(-3, 3)  # small ranges, so that a "change" often lands on the same value


def cold_text(state: AccountState) -> str:
    """The snapshot's JSON without its hot part: what the skipped write would have changed."""
    doc = state_to_json(state)
    del doc["totals"]
    for bucket in doc["buckets"].values():
        del bucket["remaining"]
    return json.dumps(doc)


def read_back(snapshot_of: AccountState, hot_of: AccountState) -> AccountState:
    """The row after a skipped write: `snapshot_of`'s snapshot, `hot_of`'s hot columns."""
    snapshot = json.loads(json.dumps(state_to_json(snapshot_of)))
    return state_from_json(
        hot_of.account_id, hot_of.seq, hot_of.balance, snapshot, {},
        hot_of.granted_total, hot_of.consumed_total, bucket_remaining(hot_of),
    )  # fmt: skip


@st.composite
def hot_changes(draw: st.DrawFn, state: AccountState) -> AccountState:
    buckets = tuple(
        replace(b, remaining=draw(SMALL | INTS)) if draw(st.booleans()) else b
        for b in state.buckets
    )
    return replace(
        state, seq=draw(INTS), balance=draw(INTS), buckets=buckets,
        granted_total=draw(INTS), consumed_total=draw(INTS),
    )  # fmt: skip


def bucket_change(draw: st.DrawFn, bucket: Bucket) -> Bucket:
    field = draw(
        st.sampled_from(
            ["priority", "effective_at", "expires_at", "granted_seq", "applies_to", "granted",
             "pending", "source", "expiry_noticed", "grant_id"]
        )
    )  # fmt: skip
    values: dict[str, st.SearchStrategy[Any]] = {
        "priority": SMALL, "effective_at": INSTANTS, "expires_at": st.none() | INSTANTS,
        "granted_seq": SMALL, "applies_to": st.none() | st.tuples(st.sampled_from("ab")),
        "granted": SMALL, "pending": SMALL, "source": st.sampled_from(["", "a"]),
        "expiry_noticed": st.booleans(), "grant_id": st.sampled_from(["", "a", "b"]),
    }  # fmt: skip
    return replace(bucket, **{field: draw(values[field])})


@st.composite
def cold_changes(draw: st.DrawFn, state: AccountState) -> AccountState:
    """Any one cold field changed, maybe to the value it had (then it is no change at all)."""
    part = draw(st.sampled_from(["bucket", "buckets", "holds", "settings", "flags"]))
    if part == "bucket" and state.buckets:
        at = draw(st.integers(0, len(state.buckets) - 1))
        changed = bucket_change(draw, state.buckets[at])
        return replace(state, buckets=(*state.buckets[:at], changed, *state.buckets[at + 1 :]))
    if part == "buckets":
        return replace(state, buckets=draw(STATES).buckets)
    if part == "holds":
        return replace(state, holds=draw(st.sampled_from([(), draw(STATES).holds])))
    if part == "settings":
        settings = state.settings
        return replace(state, settings=replace(settings, credit_limit=draw(SMALL)))
    flags = replace(AlertFlags(), low_balance=draw(st.booleans()), overage=draw(st.booleans()))
    return replace(state, flags=flags)


@st.composite
def state_pairs(draw: st.DrawFn) -> tuple[AccountState, AccountState]:
    loaded = draw(STATES)
    saved = draw(hot_changes(loaded)) if draw(st.booleans()) else loaded
    for _ in range(draw(st.integers(0, 2))):
        saved = draw(cold_changes(saved))
    if draw(st.integers(0, 9)) == 0:
        saved = draw(STATES)  # unrelated states now and then
    return loaded, saved


@given(state_pairs())
def test_skipping_the_snapshot_is_safe(pair: tuple[AccountState, AccountState]) -> None:
    loaded, saved = pair
    skipped = same_cold_part(loaded, saved)
    event("skipped" if skipped else "written")
    if skipped:
        assert cold_text(loaded) == cold_text(saved)
        assert read_back(loaded, saved) == saved


@given(state_pairs())
def test_a_changed_cold_part_is_seen_as_changed(pair: tuple[AccountState, AccountState]) -> None:
    loaded, saved = pair
    if cold_text(loaded) != cold_text(saved):
        assert not same_cold_part(loaded, saved)


@given(STATES.flatmap(lambda s: st.tuples(st.just(s), hot_changes(s))))
def test_a_hot_change_alone_keeps_the_snapshot(pair: tuple[AccountState, AccountState]) -> None:
    loaded, saved = pair
    assert same_cold_part(loaded, saved)
    assert read_back(loaded, saved) == saved


@given(STATES)
def test_no_hot_columns_read_the_snapshot_alone(state: AccountState) -> None:
    snapshot = json.loads(json.dumps(state_to_json(state)))
    assert state_from_json(state.account_id, state.seq, state.balance, snapshot, {}) == state


def test_a_bucket_the_column_does_not_name_keeps_the_snapshots_remaining() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    buckets = tuple(Bucket(g, BucketKind.GIFT, 30, at, None, 1, 50, granted=50) for g in "ab")
    state = AccountState("acct_1", seq=2, balance=100, buckets=buckets, granted_total=100)
    snapshot = json.loads(json.dumps(state_to_json(state)))
    back = state_from_json("acct_1", 3, 90, snapshot, {}, 100, 10, {"a": 40})
    assert [b.remaining for b in back.buckets] == [40, 50]
    assert [b.granted for b in back.buckets] == [50, 50]
    assert (back.granted_total, back.consumed_total) == (100, 10)
