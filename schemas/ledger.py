"""`credits.ledger.v1`: every committed ledger entry, in per-account `seq` order."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from schemas.common import UtcTime

EntryReasonName = Literal[
    "grant", "consume", "refund", "adjustment", "expiry", "void", "hold", "release"
]

# Every alert `type` on `credits.alerts.v1` (and so every webhook event type).
AlertTypeName = Literal[
    "low_balance",
    "depleted",
    "auto_reload_requested",
    "grant_expired",
    "credit_limit_exceeded",
    "overage",
    "grant_expiring",
]
ALERT_TYPES: tuple[str, ...] = get_args(AlertTypeName)


class EntryBucket(BaseModel):
    model_config = ConfigDict(frozen=True)

    grant_id: str
    kind: str
    # Set on grant entries only: the terms of the bucket the grant opens.
    expires_at: UtcTime | None = None
    effective_at: UtcTime | None = None
    priority: int | None = None
    applies_to: list[str] | None = None


class LedgerEntryMessage(BaseModel):
    """Readers ignore fields they do not know, so the writer may add fields (contract v1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    account_id: str
    seq: int
    delta: int
    balance_after: int
    reason: EntryReasonName
    source: str
    bucket: EntryBucket | None
    metadata: dict[str, str | int | None]
    reserved_delta: int = 0  # holds move credits into (+) and out of (-) reserve
    occurred_at: UtcTime
    recorded_at: UtcTime


class AlertMessage(BaseModel):
    """`credits.alerts.v1`: low_balance, depleted, auto_reload_requested, grant_expired,
    credit_limit_exceeded, overage (once per crossing), grant_expiring (once per grant, a notice
    before a grant with credit left expires). `alert_id` identifies redeliveries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alert_id: str
    account_id: str
    type: str
    occurred_at: UtcTime
    available: int
    ledger_seq: int
    details: dict[str, str | int | None]
