"""Domain types. Credits are integers; times are timezone-aware UTC datetimes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# Fixed namespace: an entry's id is a function of (account_id, seq), so a replay of the same
# input reproduces the same ids.
ENTRY_ID_NAMESPACE = uuid.UUID("6f1c2a53-93a4-4a8e-9a55-6b0f3f0c2d11")

MetadataValue = str | int | None


class BucketKind(StrEnum):
    SUBSCRIPTION = "subscription"
    PURCHASED = "purchased"
    GIFT = "gift"
    PROMOTIONAL = "promotional"


# Lower is drawn first. Subscription credits reset each period, so they go first; purchased
# credits were paid for and never expire, so they go last.
DEFAULT_PRIORITY: Mapping[BucketKind, int] = {
    BucketKind.SUBSCRIPTION: 10,
    BucketKind.PROMOTIONAL: 20,
    BucketKind.GIFT: 30,
    BucketKind.PURCHASED: 40,
}


class EntryReason(StrEnum):
    GRANT = "grant"
    CONSUME = "consume"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    EXPIRY = "expiry"
    VOID = "void"
    HOLD = "hold"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Bucket:
    """Credits from one grant. `granted_seq` orders grants oldest first."""

    grant_id: str
    kind: BucketKind
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    granted_seq: int
    remaining: int
    applies_to: tuple[str, ...] | None = None

    def usable_for(self, endpoint: str, at: datetime) -> bool:
        if self.remaining <= 0 or at < self.effective_at:
            return False
        if self.expires_at is not None and at >= self.expires_at:
            return False
        return self.applies_to is None or endpoint in self.applies_to

    def drawdown_key(self) -> tuple[int, datetime, int]:
        never = datetime.max.replace(tzinfo=self.effective_at.tzinfo)
        return (self.priority, self.expires_at or never, self.granted_seq)


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the writer must know of an account to decide the next entries."""

    account_id: str
    seq: int = 0
    balance: int = 0
    buckets: tuple[Bucket, ...] = ()


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    account_id: str
    seq: int
    delta: int
    balance_after: int
    reason: EntryReason
    source: str
    bucket_grant_id: str | None
    bucket_kind: BucketKind | None
    metadata: Mapping[str, MetadataValue]
    occurred_at: datetime
    recorded_at: datetime
    # Set on grant entries only: what a new bucket needs beyond the columns above.
    grant: Bucket | None = None

    @property
    def entry_id(self) -> str:
        return str(uuid.uuid5(ENTRY_ID_NAMESPACE, f"{self.account_id}/{self.seq}"))


@dataclass(frozen=True, slots=True)
class ConsumeUsage:
    """A billable call, already priced (`credits`)."""

    account_id: str
    request_id: str
    endpoint: str
    status_code: int
    credits: int
    occurred_at: datetime
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class GrantCredits:
    account_id: str
    command_id: str
    amount: int
    kind: BucketKind
    priority: int
    source: str
    effective_at: datetime
    expires_at: datetime | None
    occurred_at: datetime
    applies_to: tuple[str, ...] | None = None
    name: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdjustBalance:
    account_id: str
    command_id: str
    amount: int
    reason: str
    occurred_at: datetime


Command = ConsumeUsage | GrantCredits | AdjustBalance
