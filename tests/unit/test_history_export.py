"""History, the pure parts: export row formatting and the point-in-time folds."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import asyncpg
import pytest

from services.history.as_of import AsOfBalance, BucketKindBalance, TimeAxis, fold_entries
from services.history.export import (
    CSV_COLUMNS,
    csv_row,
    csv_text,
    entry_record,
    export_ledger,
    jsonl_line,
)
from tests.ledger_shapes import Ledger

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))
ENTRY_ID = uuid.UUID("0b0e2f8c-5d4f-5a8e-9c1a-2b3c4d5e6f70")
TRICKY_REASON = 'goodwill, "sorry"\nsecond line; ünïcode'


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def row(**fields: Any) -> dict[str, Any]:
    """A `ledger_entries` row as asyncpg returns it."""
    base: dict[str, Any] = {
        "entry_id": ENTRY_ID, "account_id": "acct_42", "seq": 1, "delta": 100,
        "balance_after": 100, "reason": "grant", "source": "inv_1",
        "bucket_grant_id": "g1", "bucket_kind": "purchased", "bucket_expires_at": None,
        "metadata": {}, "reserved_delta": 0, "occurred_at": T0, "recorded_at": T0,
    }  # fmt: skip
    return {**base, **fields}


# --- row formatting ------------------------------------------------------------------------


def test_entry_record_has_the_contract_fields_and_utc_z_times() -> None:
    record = entry_record(
        row(
            occurred_at=datetime(2026, 11, 21, 11, 0, tzinfo=CET),
            recorded_at=datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=UTC),
            bucket_expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )
    assert list(record) == [
        "id", "account_id", "seq", "delta", "balance_after", "reason", "source", "bucket",
        "metadata", "reserved_delta", "occurred_at", "recorded_at",
    ]  # fmt: skip
    assert record["id"] == str(ENTRY_ID)
    assert record["occurred_at"] == "2026-11-21T10:00:00Z"  # converted from +01:00
    assert record["recorded_at"] == "2026-11-21T10:00:00.123000Z"
    assert record["bucket"] == {
        "grant_id": "g1", "kind": "purchased", "expires_at": "2026-12-01T00:00:00Z",
        "effective_at": None, "priority": None, "applies_to": None,
    }  # fmt: skip


def test_a_grant_entrys_bucket_carries_its_terms_as_on_the_ledger_topic() -> None:
    terms = {"effective_at": "2026-11-21T11:00:00+01:00", "priority": 40,
             "applies_to": ["POST /v1/scanner/scan"]}  # fmt: skip
    for stored in (terms, json.dumps(terms)):  # decoded by the pool's codec, or text
        bucket = entry_record(row(bucket_terms=stored))["bucket"]
        assert bucket["effective_at"] == "2026-11-21T10:00:00Z"
        assert (bucket["priority"], bucket["applies_to"]) == (40, ["POST /v1/scanner/scan"])
    flat = dict(zip(CSV_COLUMNS, csv_row(entry_record(row(bucket_terms=terms))), strict=True))
    assert "bucket_priority" not in flat  # csv keeps the flat bucket columns only


def test_an_entry_outside_any_bucket_has_a_null_bucket() -> None:
    record = entry_record(row(reason="adjustment", bucket_grant_id=None, bucket_kind=None))
    assert record["bucket"] is None
    flat = dict(zip(CSV_COLUMNS, csv_row(record), strict=True))
    assert (flat["bucket_grant_id"], flat["bucket_kind"], flat["bucket_expires_at"]) == ("", "", "")


def test_metadata_as_text_from_a_bare_connection_is_decoded() -> None:
    record = entry_record(row(metadata='{"endpoint": "POST /v1/scan", "status_code": 200}'))
    assert record["metadata"] == {"endpoint": "POST /v1/scan", "status_code": 200}


def test_csv_quotes_metadata_with_commas_quotes_and_newlines_and_reads_back() -> None:
    records = [
        entry_record(row()),
        entry_record(
            row(seq=2, delta=7, balance_after=107, reason="adjustment", source="adjustment:c1",
                bucket_grant_id=None, bucket_kind=None, metadata={"reason": TRICKY_REASON})
        ),
    ]  # fmt: skip
    text = csv_text(records, header=True)
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == list(CSV_COLUMNS)
    assert len(parsed) == 3  # the newline inside the metadata did not split the row
    flat = dict(zip(CSV_COLUMNS, parsed[2], strict=True))
    assert json.loads(flat["metadata"]) == {"reason": TRICKY_REASON}
    assert (flat["seq"], flat["delta"], flat["balance_after"]) == ("2", "7", "107")
    assert flat["source"] == "adjustment:c1"
    assert json.loads(dict(zip(CSV_COLUMNS, parsed[1], strict=True))["metadata"]) == {}


def test_csv_without_header_is_rows_only() -> None:
    text = csv_text([entry_record(row())])
    assert len(list(csv.reader(io.StringIO(text, newline="")))) == 1
    assert csv_text([], header=False) == ""


def test_a_jsonl_line_is_one_line_that_reads_back_to_the_record() -> None:
    record = entry_record(row(metadata={"reason": TRICKY_REASON, "status_code": 500}))
    line = jsonl_line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == record
    assert "ünïcode" in line  # kept as UTF-8, not escaped


def test_a_jsonl_line_survives_unicode_line_separators() -> None:
    record = entry_record(row(metadata={"reason": "a\u2028b\u2029c"}))
    line = jsonl_line(record)
    assert line.splitlines() == [line[:-1]]
    assert json.loads(line)["metadata"] == {"reason": "a\u2028b\u2029c"}


async def test_arguments_are_checked_before_any_query() -> None:
    never_used = cast(asyncpg.Pool, object())
    with pytest.raises(ValueError, match="format"):
        await export_ledger(never_used, io.BytesIO(), "xlsx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="binary"):
        await export_ledger(never_used, io.StringIO(), "parquet")
    with pytest.raises(ValueError, match="offset"):
        await export_ledger(never_used, io.StringIO(), "csv", from_=datetime(2026, 11, 21))  # noqa: DTZ001
    with pytest.raises(ValueError, match="batch_rows"):
        await export_ledger(never_used, io.StringIO(), "csv", batch_rows=0)


# --- the point-in-time folds ---------------------------------------------------------------


def entry(
    seq: int, delta: int, reason: str, kind: str | None, occurred: float, recorded: float,
    reserved_delta: int = 0,
) -> dict[str, Any]:  # fmt: skip
    return {"seq": seq, "delta": delta, "reason": reason, "bucket_kind": kind,
            "bucket_grant_id": f"g_{kind}" if kind else None,
            "reserved_delta": reserved_delta, "occurred_at": minutes(occurred),
            "recorded_at": minutes(recorded)}  # fmt: skip


# Recorded at minute 100 + seq, except seq 7, a usage call that happened at minute 5 but reached
# the ledger last; seq 6 is a hold.
HISTORY = [
    entry(1, 30, "grant", "subscription", occurred=0, recorded=101),
    entry(2, 100, "grant", "purchased", occurred=0, recorded=102),
    entry(3, -30, "consume", "subscription", occurred=10, recorded=103),
    entry(4, -10, "consume", "purchased", occurred=10, recorded=104),
    entry(5, 4, "refund", "purchased", occurred=20, recorded=105),
    entry(6, 0, "hold", None, occurred=20, recorded=105, reserved_delta=25),
    entry(7, 7, "adjustment", None, occurred=30, recorded=106),
    entry(8, -2, "consume", "purchased", occurred=5, recorded=107),
]


def test_fold_by_occurred_time_takes_late_events_at_their_event_time() -> None:
    at_5 = fold_entries("acct_42", HISTORY, minutes(5), by="occurred")
    assert at_5 == AsOfBalance(
        account_id="acct_42", as_of=minutes(5), by="occurred", seq=8, entries=3,
        balance=128, reserved=0, granted_total=130, consumed_total=2,
        buckets=(BucketKindBalance("purchased", 100, 98),
                 BucketKindBalance("subscription", 30, 30)),
        last_recorded_at=minutes(107),
    )  # fmt: skip
    at_20 = fold_entries("acct_42", HISTORY, minutes(20), by="occurred")
    assert at_20 is not None
    assert (at_20.balance, at_20.reserved, at_20.available) == (92, 25, 67)
    assert (at_20.consumed_total, at_20.entries, at_20.seq) == (38, 7, 8)
    assert at_20.unbucketed == 0
    everything = fold_entries("acct_42", HISTORY, minutes(30))  # occurred is the default here
    assert everything is not None
    assert (everything.balance, everything.unbucketed, everything.entries) == (99, 7, 8)


def test_fold_before_the_first_event_is_none() -> None:
    assert fold_entries("acct_42", HISTORY, minutes(-1), by="occurred") is None
    assert fold_entries("acct_42", HISTORY, minutes(100), by="recorded") is None
    assert fold_entries("acct_42", [], minutes(100)) is None


def test_fold_by_recorded_time_is_a_prefix_of_the_ledger() -> None:
    at_105 = fold_entries("acct_42", HISTORY, minutes(105), by="recorded")
    assert at_105 is not None
    assert (at_105.seq, at_105.entries, at_105.balance, at_105.reserved) == (6, 6, 94, 25)
    assert at_105.consumed_total == 36
    # The late call is in ledger time only from when it was recorded.
    at_106 = fold_entries("acct_42", HISTORY, minutes(106), by="recorded")
    assert at_106 is not None and (at_106.seq, at_106.balance) == (7, 101)
    # Entries out of order in the input change nothing.
    assert fold_entries("acct_42", reversed(HISTORY), minutes(105), by="recorded") == at_105


def test_fold_by_recorded_time_takes_the_prefix_through_the_last_entry_recorded() -> None:
    # seq 2 carries an earlier recorded_at than seq 1 (clock skew): the state as of then is
    # still a ledger state, 1..2, never seq 2 alone.
    skewed = [
        entry(1, 10, "grant", "gift", occurred=0, recorded=2),
        entry(2, 5, "grant", "gift", occurred=0, recorded=1),
    ]
    result = fold_entries("a", skewed, minutes(1), by="recorded")
    assert result is not None and (result.seq, result.entries, result.balance) == (2, 2, 15)


def test_fold_accepts_the_contracts_bucket_shape() -> None:
    entries = [
        {**e, "bucket": {"grant_id": e["bucket_grant_id"], "kind": e["bucket_kind"]}
         if e["bucket_kind"] else None}
        for e in HISTORY
    ]  # fmt: skip
    for e in entries:
        del e["bucket_kind"], e["bucket_grant_id"]
    assert fold_entries("acct_42", entries, minutes(30)) == fold_entries(
        "acct_42", HISTORY, minutes(30)
    )


def test_fold_refuses_a_naive_instant_and_an_unknown_axis() -> None:
    with pytest.raises(ValueError, match="offset"):
        fold_entries("acct_42", HISTORY, datetime(2026, 11, 21))  # noqa: DTZ001
    with pytest.raises(ValueError, match="by"):
        fold_entries("acct_42", HISTORY, minutes(1), by="wall")  # type: ignore[arg-type]


def test_as_of_json_uses_the_balance_endpoints_names() -> None:
    result = fold_entries("acct_42", HISTORY, minutes(30))
    assert result is not None
    body = result.to_json()
    assert body == {
        "accountId": "acct_42", "asOf": "2026-11-21T10:30:00Z", "by": "occurred",
        "balance": 99, "reserved": 25, "available": 74, "scheduled": 0, "overage": 0,
        "grantedTotal": 130, "consumedTotal": 38,
        "buckets": [{"kind": "purchased", "amount": 100, "balance": 92},
                    {"kind": "subscription", "amount": 30, "balance": 0},
                    {"kind": "unbucketed", "amount": 7, "balance": 7}],
        "unbucketed": 7, "ledgerSeq": 8, "entries": 8, "lastUpdated": "2026-11-21T11:47:00Z",
        "resetAt": None,
    }  # fmt: skip


# --- what was due at the instant: the due gap ---------------------------------------------

EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)


def in_the_gap(kind: str) -> tuple[list[dict[str, Any]], datetime]:
    """A grant's expiry (or a scheduled grant's activation) due at EXPIRES, written by the writer
    4 s later: the ledger's rows and an instant 2 s after EXPIRES, inside the gap."""
    book = Ledger("gap", recorded_base=EXPIRES - timedelta(days=30))
    issued = EXPIRES - timedelta(days=30)
    if kind == "expiry":
        book.grant("g", 100, "purchased", issued, expires_at=EXPIRES)
        book.add(
            "expiry", -100, "expiry:g", EXPIRES, "g", recorded_at=EXPIRES + timedelta(seconds=4)
        )
    else:
        book.grant("g", 100, "purchased", issued, effective_at=EXPIRES)
        book.add(
            "grant", 100, "grant:g", EXPIRES, "g", {"activated": 100},
            recorded_at=EXPIRES + timedelta(seconds=4),
        )  # fmt: skip
    return [book.row(e) for e in book.entries], EXPIRES + timedelta(seconds=2)


@pytest.mark.parametrize("by", ["recorded", "occurred"])
def test_an_expiry_due_but_not_yet_written_has_left_at_the_instant(by: TimeAxis) -> None:
    """As the live balance and explain have it: the grant expired at 00:00:00Z has nothing to
    spend at 00:00:02Z, though the writer records its expiry entry only at 00:00:04Z."""
    rows, gap = in_the_gap("expiry")
    before_written = [r for r in rows if r["reason"] != "expiry"]
    for ledger in (rows, before_written):
        result = fold_entries("gap", ledger, gap, by=by)
        assert result is not None
        assert (result.balance, result.available, result.buckets) == (0, 0, ()), by
    before = fold_entries("gap", rows, EXPIRES - timedelta(seconds=1), by=by)
    assert before is not None and before.balance == 100


@pytest.mark.parametrize("by", ["recorded", "occurred"])
def test_a_scheduled_grant_due_but_not_yet_activated_is_spendable_at_the_instant(
    by: TimeAxis,
) -> None:
    rows, gap = in_the_gap("activation")
    before_written = [r for r in rows if "activated" not in (r["metadata"] or {})]
    for ledger in (rows, before_written):
        result = fold_entries("gap", ledger, gap, by=by)
        assert result is not None
        assert (result.balance, result.scheduled) == (100, 0), by
        assert result.buckets == (BucketKindBalance("purchased", 100, 100),)
        if by == "recorded":
            assert result.seq == 1  # the ledger's seq, not the due entry's
    before = fold_entries("gap", rows, EXPIRES - timedelta(seconds=1), by=by)
    assert before is not None and (before.balance, before.scheduled) == (0, 100)
