"""Decoding's fast usage digest equals the general canonical digest, byte for byte: a digest that
changed would make the redelivery of an event applied before an upgrade look like a reuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.usage import UsageEvent
from services.writer.decoding import _digest, _usage_digest

TEXT = st.text(min_size=1, max_size=16)


@settings(max_examples=300, deadline=None, database=None)
@given(
    request_id=TEXT,
    account_id=st.from_regex(r"[A-Za-z0-9_.:\-]{1,20}", fullmatch=True),
    key_id=st.none() | st.text(max_size=16),
    endpoint=TEXT,
    status_code=st.integers(100, 599),
    micros=st.integers(0, 10**12),
    offset_min=st.sampled_from([0, 120, -330]),
    credits=st.none() | st.integers(0, 10**12),
    latency_ms=st.none() | st.integers(0, 86_400_000),
)
def test_usage_digest_equals_the_canonical_digest(
    request_id: str,
    account_id: str,
    key_id: str | None,
    endpoint: str,
    status_code: int,
    micros: int,
    offset_min: int,
    credits: int | None,
    latency_ms: int | None,
) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    occurred_at = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).astimezone(
        zone
    )
    event = UsageEvent(
        request_id=request_id, account_id=account_id, key_id=key_id, endpoint=endpoint,
        status_code=status_code, occurred_at=occurred_at, credits=credits, latency_ms=latency_ms,
    )  # fmt: skip
    assert _usage_digest(event, occurred_at.astimezone(UTC)) == _digest(event)


def test_usage_digest_names_every_field_of_the_event() -> None:
    """A field added to UsageEvent must join the fast digest too (this fails until it does)."""
    event = UsageEvent(
        request_id="r", account_id="a", endpoint="e", status_code=200,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    assert set(UsageEvent.model_fields) == set(event.model_dump())
    assert len(UsageEvent.model_fields) == 8
