"""The projector builds its rows positionally from the stored columns (one per account and per
grant of every batch): the dataclasses' field order must stay the columns' order."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from projections.balance.apply import BalanceView, GrantBalance
from projections.balance.store import grants_json, view_from_row
from projections.grants.apply import GrantRow
from projections.grants.projection import COLUMNS, row_to_grant

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_grant_rows_read_back_field_by_field() -> None:
    assert tuple(f.name for f in fields(GrantRow)) == COLUMNS
    stored = {
        "kind": "gift", "amount": 10, "remaining": 7, "source": "src", "state": "active",
        "granted_seq": 1, "granted_at": T0, "priority": 30, "effective_at": T0,
        "expires_at": T0.replace(year=2027), "applies_to": ["POST /x"], "name": "n",
        "closed_seq": None,
    }  # fmt: skip
    assert row_to_grant(stored) == GrantRow(**{**stored, "applies_to": ("POST /x",)})  # type: ignore[arg-type]
    assert row_to_grant({**stored, "applies_to": None}).applies_to is None  # type: ignore[arg-type]


def test_balance_views_read_back_field_by_field() -> None:
    view = BalanceView(
        "acct", last_seq=3, balance=5, reserved=1, granted_total=9, consumed_total=4,
        grants={"g": GrantBalance("gift", 9, 5, T0, scheduled=0)}, last_updated=T0,
    )  # fmt: skip
    stored = {f.name: getattr(view, f.name) for f in fields(BalanceView)}
    stored["grants"] = grants_json(view)
    assert view_from_row(stored) == view  # type: ignore[arg-type]
