"""The grants read model from ledger entries. Pure.

A grant's opening entry opens the row (`amount` = `metadata.granted`, else the delta for entries
written before it; `remaining` = the delta; terms from the entry's bucket) in state `active`, or
`scheduled` when it carries `metadata.scheduled` (not yet effective: remaining 0). Its activation
entry (`metadata.activated`) makes it `active`; it and every later entry naming the bucket move
`remaining` by their delta; `expiry` and `void` close it with state `expired` / `voided` and
nothing left. `remaining` never goes below zero. An overage payment (bucket NULL) names no row.
See projections/grant_entries.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from projections.grant_entries import granted_amount, is_activation, scheduled_amount
from schemas.ledger import LedgerEntryMessage

GrantKey = tuple[str, str]  # (account_id, grant_id)


@dataclass(frozen=True)
class GrantRow:
    kind: str
    amount: int
    remaining: int
    source: str
    state: str
    granted_seq: int
    granted_at: datetime
    priority: int | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    applies_to: tuple[str, ...] | None = None
    name: str | None = None
    closed_seq: int | None = None


def only_moves_remaining(entry: LedgerEntryMessage) -> bool:
    """The entry, naming a grant, changes nothing of its row but `remaining` (not an opening,
    activation or closing entry): every consume and refund."""
    return entry.reason not in ("grant", "expiry", "void")


def moved_remaining(remaining: int, entry: LedgerEntryMessage) -> int:
    """What the grant the entry names has left after it."""
    remaining += entry.delta
    assert remaining >= 0, f"grant {entry.bucket.grant_id if entry.bucket else None} below zero"
    return remaining


def apply(grants: dict[GrantKey, GrantRow], entry: LedgerEntryMessage) -> None:
    """`grants` must hold every row the entry names (loaded by the caller)."""
    bucket = entry.bucket
    if bucket is None:
        return
    key = (entry.account_id, bucket.grant_id)
    if entry.reason == "grant" and not is_activation(entry.metadata):
        name = entry.metadata.get("name")
        scheduled = scheduled_amount(entry.metadata) > 0
        grants[key] = GrantRow(
            kind=bucket.kind, amount=granted_amount(entry.metadata, entry.delta),
            remaining=entry.delta, source=entry.source,
            state="scheduled" if scheduled else "active", granted_seq=entry.seq,
            granted_at=entry.occurred_at,
            priority=bucket.priority, effective_at=bucket.effective_at,
            expires_at=bucket.expires_at,
            applies_to=tuple(bucket.applies_to) if bucket.applies_to is not None else None,
            name=name if isinstance(name, str) else None,
        )  # fmt: skip
        return
    row = grants[key]
    remaining = moved_remaining(row.remaining, entry)
    if entry.reason == "grant":  # the activation
        assert row.state == "scheduled", f"activation of grant {bucket.grant_id}, not scheduled"
        grants[key] = replace(row, remaining=remaining, state="active")
    elif entry.reason in ("expiry", "void"):
        assert remaining == 0, "a closing entry takes all that is left"
        state = "expired" if entry.reason == "expiry" else "voided"
        grants[key] = replace(row, remaining=0, state=state, closed_seq=entry.seq)
    else:
        # The call on every consume and refund: a constructor, not `replace` (a few times
        # cheaper, and the fields are all here).
        grants[key] = GrantRow(
            row.kind, row.amount, remaining, row.source, row.state, row.granted_seq,
            row.granted_at, row.priority, row.effective_at, row.expires_at, row.applies_to,
            row.name, row.closed_seq,
        )  # fmt: skip
