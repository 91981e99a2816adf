"""The projector's fast reader of ledger messages equals pydantic's, on what the writer writes
and on random changes to it (where the fast path must hand over, never disagree)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.ledger import LedgerEntryMessage
from schemas.ledger_decode import decode_entry_message
from services.writer.wire import entry_to_json_bytes
from tests.unit.test_core_properties import BOUNDED, fold, histories

ODD_VALUES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(),
                                                            max_size=2)
    | st.sampled_from(["2026-11-21T10:00:00+01:00", "2026-11-21T10:00:00Z", "2026-11-21",
                       "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-11-21T10:00:00.5Z",
                       "grant", "expiry", "1e400"])
)  # fmt: skip


def _both(value: bytes) -> tuple[Any, Any]:
    """Each reader's answer: the model's fields, or the error's kind."""
    answers: list[Any] = []
    for read in (decode_entry_message, LedgerEntryMessage.model_validate_json):
        try:
            answers.append(read(value).model_dump())
        except ValidationError:
            answers.append("invalid")
    return answers[0], answers[1]


@BOUNDED
@given(histories())
def test_equal_on_every_entry_the_writer_writes(commands: list) -> None:  # type: ignore[type-arg]
    for entry in fold(commands).entries:
        value = entry_to_json_bytes(entry)
        fast = decode_entry_message(value)
        assert fast == LedgerEntryMessage.model_validate_json(value)
        assert fast.model_dump() == LedgerEntryMessage.model_validate_json(value).model_dump()


@BOUNDED
@given(histories(), st.data())
def test_equal_or_handed_over_on_changed_messages(
    commands: list,  # type: ignore[type-arg]
    data: st.DataObject,
) -> None:
    entries = fold(commands).entries
    if not entries:
        return
    body = json.loads(entry_to_json_bytes(data.draw(st.sampled_from(entries))))
    field = data.draw(st.sampled_from([*body, "bucket.kind", "bucket.expires_at", "metadata.x"]))
    value = data.draw(ODD_VALUES)
    if field.startswith("bucket."):
        if isinstance(body["bucket"], dict):
            body["bucket"][field.split(".", 1)[1]] = value
        else:
            body["bucket"] = value
    elif field == "metadata.x":
        body["metadata"]["x"] = value
    elif data.draw(st.booleans()):
        body[field] = value
    else:
        del body[field]
    text = json.dumps(body).replace('"1e400"', "1e400")  # a number no double holds
    fast, reference = _both(text.encode())
    assert fast == reference


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 2**70},  # past 64 bits: orjson would read a float
        {"metadata": {"big": 2**70}},
        {"occurred_at": "2026-11-21T11:00:00+01:00"},
        {"recorded_at": "9999-12-31T23:59:59Z"},  # past the contract's latest instant
        {"delta": True},
        {"extra_field": 1},
    ],
)
def test_unusual_shapes_read_as_pydantic_reads_them(change: dict[str, Any]) -> None:
    t0 = datetime(2026, 11, 21, 10, tzinfo=UTC)
    body = {
        "id": "e1", "account_id": "a", "seq": 1, "delta": 5, "balance_after": 5,
        "reason": "grant", "source": "s", "bucket": None, "metadata": {}, "reserved_delta": 0,
        "occurred_at": t0, "recorded_at": t0 + timedelta(seconds=1),
    }  # fmt: skip
    value = orjson.dumps(body, option=orjson.OPT_UTC_Z)
    assert decode_entry_message(value) == LedgerEntryMessage.model_validate_json(value)
    changed = json.loads(value) | change
    fast, reference = _both(json.dumps(changed).encode())
    assert fast == reference
