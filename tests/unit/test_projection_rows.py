"""The projector builds its rows positionally from the stored columns (one per account and per
grant of every batch): the dataclasses' field order must stay the columns' order."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from projections.balance.apply import BalanceView, GrantBalance
from projections.balance.store import grants_json, view_from_row
from projections.grants.apply import (
    GrantKey,
    GrantRow,
    apply,
    moved_remaining,
    only_moves_remaining,
)
from projections.grants.projection import COLUMNS, row_to_grant
from schemas.ledger import EntryBucket, LedgerEntryMessage

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_grant_rows_read_back_field_by_field() -> None:
    assert tuple(f.name for f in fields(GrantRow)) == COLUMNS
    stored = {
        "kind": "gift", "amount": 10, "remaining": 7, "source": "src", "state": "active",
        "granted_seq": 1, "granted_at": T0, "priority": 30,
        "effective_at": T0.replace(hour=11),  # every instant its own: a swap would show
        "expires_at": T0.replace(year=2027), "applies_to": ["POST /x"], "name": "n",
        "closed_seq": 2,
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


def _entry(seq: int, reason: str, delta: int, metadata: dict[str, str | int | None]) -> Any:
    return LedgerEntryMessage(
        id=f"e{seq}", account_id="acct", seq=seq, delta=delta, balance_after=0, reason=reason,
        source="s", bucket=EntryBucket(grant_id="g", kind="gift"), metadata=metadata,
        occurred_at=T0, recorded_at=T0,
    )  # fmt: skip


def test_the_grants_models_short_path_folds_as_apply_does() -> None:
    """The projection moves `remaining` alone for the entries `only_moves_remaining` names;
    `apply` must leave everything else of such a row as it was."""
    opening = _entry(1, "grant", 10, {"granted": 10})
    grants: dict[GrantKey, GrantRow] = {}
    apply(grants, opening)
    remaining = grants[("acct", "g")].remaining
    for seq, (reason, delta) in enumerate(
        [("consume", -4), ("refund", 2), ("adjustment", -1), ("hold", -2), ("consume", -5)], 2
    ):
        entry = _entry(seq, reason, delta, {})
        assert only_moves_remaining(entry)
        before = grants[("acct", "g")]
        apply(grants, entry)
        remaining = moved_remaining(remaining, entry)
        assert grants[("acct", "g")] == replace(before, remaining=remaining)
    with pytest.raises(AssertionError):
        moved_remaining(remaining, _entry(9, "consume", -remaining - 1, {}))
    closing: list[tuple[str, dict[str, str | int | None]]] = [
        ("grant", {"activated": 5}), ("expiry", {}), ("void", {}),
    ]  # fmt: skip
    for reason, metadata in closing:
        assert not only_moves_remaining(_entry(9, reason, 0, metadata))
