"""The grants model's hot branch (a consume or refund moving `remaining`) keeps the rest."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from projections.grants.apply import GrantRow, apply
from schemas.ledger import EntryBucket, LedgerEntryMessage

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_consume_moves_remaining_and_nothing_else() -> None:
    row = GrantRow(
        kind="gift", amount=10, remaining=10, source="src", state="active", granted_seq=1,
        granted_at=T0, priority=30, effective_at=T0, expires_at=T0.replace(year=2027),
        applies_to=("POST /x",), name="n", closed_seq=None,
    )  # fmt: skip
    grants = {("acct_1", "g1"): row}
    consume = LedgerEntryMessage(
        id="e2", account_id="acct_1", seq=2, delta=-3, balance_after=7, reason="consume",
        source="request:r1", bucket=EntryBucket(grant_id="g1", kind="gift"), metadata={},
        occurred_at=T0, recorded_at=T0,
    )  # fmt: skip
    apply(grants, consume)
    assert grants[("acct_1", "g1")] == replace(row, remaining=7)
