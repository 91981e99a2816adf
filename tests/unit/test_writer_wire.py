"""The writer's fast encodings equal the reference ones they replace, byte for byte."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from services.core.model import (
    ENTRY_ID_NAMESPACE,
    Bucket,
    BucketKind,
    EntryReason,
    LedgerEntry,
    entry_id_of,
)
from services.history.core_entries import to_message as entry_to_message
from services.writer.wire import entry_to_json_bytes
from tests.unit.test_core_properties import BOUNDED, fold, histories

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TEXT = st.text(max_size=12)


@BOUNDED
@given(account_id=TEXT, seq=st.integers(0, 2**62))
def test_entry_id_is_uuid5_of_account_and_seq(account_id: str, seq: int) -> None:
    expected = uuid.uuid5(ENTRY_ID_NAMESPACE, f"{account_id}/{seq}")
    assert entry_id_of(account_id, seq) == str(expected)


@BOUNDED
@given(histories())
def test_entry_json_equals_the_pydantic_message(commands: list) -> None:  # type: ignore[type-arg]
    for entry in fold(commands).entries:
        assert entry_to_json_bytes(entry) == entry_to_message(entry).model_dump_json().encode()


def _entry(**changes: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "account_id": "acct_1", "seq": 3, "delta": 5, "balance_after": 5,
        "reason": EntryReason.GRANT, "source": "src", "bucket_grant_id": "g1",
        "bucket_kind": BucketKind.GIFT, "metadata": {}, "occurred_at": T0, "recorded_at": T0,
    }  # fmt: skip
    fields.update(changes)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


@BOUNDED
@given(
    source=TEXT,
    metadata=st.dictionaries(TEXT, st.none() | st.integers(-(2**53), 2**53) | TEXT, max_size=4),
    micros=st.integers(0, 999_999),
    offset_h=st.sampled_from([0, 2, -5]),
    applies_to=st.none() | st.lists(TEXT, max_size=3).map(tuple),
    expires=st.booleans(),
)
def test_entry_json_of_odd_text_times_and_terms(
    source: str,
    metadata: dict[str, str | int | None],
    micros: int,
    offset_h: int,
    applies_to: tuple[str, ...] | None,
    expires: bool,
) -> None:
    at = (T0 + timedelta(microseconds=micros)).astimezone(timezone(timedelta(hours=offset_h)))
    grant = Bucket(
        "g1", BucketKind.GIFT, 30, at, at + timedelta(days=1) if expires else None, 3, 5,
        applies_to,
    )  # fmt: skip
    for entry in (
        _entry(source=source, metadata=metadata, occurred_at=at, grant=grant),
        _entry(source=source, metadata=metadata, recorded_at=at, bucket_grant_id=None),
        _entry(reason=EntryReason.CONSUME, delta=-1, balance_after=4, metadata=metadata),
    ):
        assert entry_to_json_bytes(entry) == entry_to_message(entry).model_dump_json().encode()
