"""The csv export neutralises text a spreadsheet would run as a formula; numbers stay numbers."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.history.export import CSV_COLUMNS, csv_text, entry_record

AT = datetime(2026, 11, 21, tzinfo=UTC)


def entry(source: str, delta: int = -5) -> dict[str, Any]:
    return {
        "entry_id": uuid.UUID(int=1), "account_id": "acct", "seq": 1, "delta": delta,
        "balance_after": -3, "reason": "consume", "source": source, "bucket_grant_id": None,
        "bucket_kind": None, "bucket_expires_at": None, "metadata": {"endpoint": source},
        "reserved_delta": 0, "occurred_at": AT, "recorded_at": AT,
    }  # fmt: skip


def exported(source: str) -> dict[str, str]:
    text = csv_text([entry_record(entry(source))])
    row = next(csv.reader(io.StringIO(text, newline="")))
    return dict(zip(CSV_COLUMNS, row, strict=True))


@pytest.mark.parametrize(
    "formula", ['=HYPERLINK("http://evil")', "+cmd|'/C calc'!A0", "-2+3", "@SUM(1)", "\t=1", "\r=1"]
)
def test_formula_text_gets_a_leading_apostrophe(formula: str) -> None:
    row = exported(formula)
    assert row["source"] == "'" + formula
    assert row["delta"] == "-5" and row["balance_after"] == "-3"  # numbers as they are
    assert row["metadata"].startswith("{")  # JSON text starts with a brace: inert


def test_plain_text_is_verbatim() -> None:
    assert exported("request:r1 = 2")["source"] == "request:r1 = 2"
