"""Domain types. Credits are integers; times are timezone-aware UTC datetimes."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from services.core.value import value_type

# Fixed namespace: an entry's id is a function of (account_id, seq), so a replay of the same
# input reproduces the same ids.
ENTRY_ID_NAMESPACE = uuid.UUID("6f1c2a53-93a4-4a8e-9a55-6b0f3f0c2d11")
_ENTRY_ID_PREFIX = ENTRY_ID_NAMESPACE.bytes

MetadataValue = str | int | None

_NEVER_UTC = datetime.max.replace(tzinfo=UTC)  # Bucket.drawdown_key's "never expires"


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


class AlertKind(StrEnum):
    LOW_BALANCE = "low_balance"
    DEPLETED = "depleted"
    AUTO_RELOAD_REQUESTED = "auto_reload_requested"
    GRANT_EXPIRED = "grant_expired"
    CREDIT_LIMIT_EXCEEDED = "credit_limit_exceeded"
    OVERAGE = "overage"
    GRANT_EXPIRING = "grant_expiring"  # a notice before a grant with credit left expires


# How long before a grant with credit left expires its `grant_expiring` notice goes out, unless
# the account's settings say otherwise (0 turns the notice off).
DEFAULT_GRANT_EXPIRING_NOTICE_S = 3 * 86_400


@value_type
class Bucket:
    """Credits from one grant. `granted_seq` orders grants oldest first.

    A grant whose `effective_at` is ahead is scheduled: its credit is `pending`, not spendable
    and not in the balance, until event time reaches `effective_at` (then `remaining`)."""

    grant_id: str
    kind: BucketKind
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    granted_seq: int
    remaining: int
    applies_to: tuple[str, ...] | None = None
    granted: int = 0  # the grant's whole amount
    pending: int = 0  # scheduled credit: becomes `remaining` at `effective_at`
    source: str = ""  # the grant's source, repeated on the entry that makes it spendable
    expiry_noticed: bool = False  # its `grant_expiring` alert went out (once per grant)

    @property
    def scheduled(self) -> bool:
        return self.pending > 0

    def usable_for(self, endpoint: str | None, at: datetime) -> bool:
        """`endpoint` None: any endpoint (adjustments draw from every bucket)."""
        if self.remaining <= 0 or at < self.effective_at or self.expired_at(at):
            return False
        return self.applies_to is None or endpoint is None or endpoint in self.applies_to

    def expired_at(self, at: datetime) -> bool:
        return self.expires_at is not None and at >= self.expires_at

    def notice_at(self, notice_s: int) -> datetime | None:
        """When its `grant_expiring` notice is due (never before it is effective); None when it
        never expires, was noticed already, or notices are off (`notice_s` 0)."""
        if self.expires_at is None or self.expiry_noticed or notice_s <= 0:
            return None
        return max(self.expires_at - timedelta(seconds=notice_s), self.effective_at)

    def drawdown_key(self) -> tuple[int, datetime, int]:
        tz = self.effective_at.tzinfo  # UTC in the core: its "never" made once, not per call
        never = _NEVER_UTC if tz is UTC else datetime.max.replace(tzinfo=tz)
        return (self.priority, self.expires_at or never, self.granted_seq)


@value_type
class Hold:
    hold_id: str
    amount: int
    expires_at: datetime


@value_type
class Draw:
    """Part of a consume: `amount` credits from one bucket (None: from no bucket)."""

    grant_id: str | None
    kind: BucketKind | None
    amount: int
    refunded: int = 0


@value_type
class Consumption:
    """A request's consume lineage, so refunds go back where the credits came from."""

    request_id: str
    draws: tuple[Draw, ...]
    # From its first consume entry: refund entries carry them, so read models can net a refund
    # against the call's own endpoint and day however late the refund comes.
    endpoint: str | None = None
    consumed_at: datetime | None = None

    @property
    def refundable(self) -> int:
        return sum(d.amount - d.refunded for d in self.draws)


@dataclass(frozen=True, slots=True)  # frozen at run time too: shared as a default
class AutoReload:
    threshold: int
    amount: int
    max_per_day: int


@dataclass(frozen=True, slots=True)  # frozen at run time too: shared as a default
class AccountSettings:
    low_balance_threshold: int | None = None
    auto_reload: AutoReload | None = None
    credit_limit: int = 0  # how far below zero usage may take the balance
    grant_expiring_notice_s: int = DEFAULT_GRANT_EXPIRING_NOTICE_S


@dataclass(frozen=True, slots=True)  # frozen at run time too: shared as a default
class AlertFlags:
    """Which alerts have fired since `available` last came back above their threshold."""

    low_balance: bool = False
    depleted: bool = False
    auto_reload: bool = False
    auto_reload_day: date | None = None
    auto_reloads_that_day: int = 0
    overage: bool = False  # something is owed
    over_limit: bool = False  # beyond the credit limit (see spend.within_limit)


@value_type
class AccountState:
    """What the writer must know of an account to decide the next events.

    `consumptions` holds only the lineage a batch needs (the writer loads it per batch from the
    ledger); everything else is the account's whole state.
    """

    account_id: str
    seq: int = 0
    balance: int = 0
    buckets: tuple[Bucket, ...] = ()
    holds: tuple[Hold, ...] = ()
    settings: AccountSettings = AccountSettings()
    flags: AlertFlags = AlertFlags()
    consumptions: Mapping[str, Consumption] = field(default_factory=dict)
    granted_total: int = 0  # sum of grant entries' deltas: credit that became spendable
    consumed_total: int = 0  # consumes minus refunds

    @property
    def reserved(self) -> int:
        return sum(h.amount for h in self.holds)

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def pot(self) -> int:
        """The balance outside every bucket, signed: credit tied to no grant when above zero
        (adjustments, refunds of closed buckets), what is owed when below."""
        return self.balance - sum(b.remaining for b in self.buckets)

    @property
    def unbucketed(self) -> int:
        return max(self.pot, 0)

    @property
    def overage(self) -> int:
        """What no spendable credit covered: owed until a grant becomes spendable."""
        return max(-self.pot, 0)

    @property
    def scheduled(self) -> int:
        return sum(b.pending for b in self.buckets)

    def next_due_at(self) -> datetime | None:
        """When a grant next becomes spendable or a bucket or hold expires: the scheduler's cue
        to send `expire`."""
        due = [b.expires_at for b in self.buckets if b.expires_at and b.remaining > 0]
        due += [b.effective_at for b in self.buckets if b.pending > 0]
        due += [h.expires_at for h in self.holds]
        due += self.notices_due()
        return min(due, default=None)

    def notices_due(self) -> list[datetime]:
        """When each bucket with credit (now or scheduled) gets its `grant_expiring` notice."""
        notice_s = self.settings.grant_expiring_notice_s
        due = [b.notice_at(notice_s) for b in self.buckets if b.remaining > 0 or b.pending > 0]
        return [at for at in due if at is not None]


@value_type
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
    # Holds move credits between available and reserved without changing the balance.
    reserved_delta: int = 0
    # Set on grant entries only: the bucket the grant opens.
    grant: Bucket | None = None
    # Set on consume entries: the request and draw they belong to, for refund lineage.
    request_id: str | None = None
    # Set on hold entries: the hold they open.
    hold: Hold | None = None

    @property
    def entry_id(self) -> str:
        return entry_id_of(self.account_id, self.seq)


def entry_id_of(account_id: str, seq: int) -> str:
    """`str(uuid.uuid5(ENTRY_ID_NAMESPACE, f"{account_id}/{seq}"))`, the same text at a third of
    the cost (no UUID object, no 128-bit integer arithmetic): one is computed per entry."""
    digest = bytearray(hashlib.sha1(_ENTRY_ID_PREFIX + f"{account_id}/{seq}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_id = digest[:16].hex()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


@value_type
class AlertRaised:
    account_id: str
    kind: AlertKind
    occurred_at: datetime
    available: int
    after_seq: int  # the ledger position the alert describes; with `kind`, its identity
    details: Mapping[str, MetadataValue] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        if self.kind is AlertKind.GRANT_EXPIRING:  # several grants may be noticed at one seq
            return (
                f"{self.account_id}:{self.after_seq}:{self.kind.value}:{self.details['grant_id']}"
            )
        return f"{self.account_id}:{self.after_seq}:{self.kind.value}"


@value_type
class SettingsChanged:
    account_id: str
    settings: AccountSettings


@value_type
class CommandRejected:
    account_id: str
    code: str  # stable, e.g. "refund-exceeds-consumed"
    detail: str


Event = LedgerEntry | AlertRaised | SettingsChanged | CommandRejected


# Commands ----------------------------------------------------------------------------------


@value_type
class ConsumeUsage:
    """A billable call, already priced (`credits`)."""

    account_id: str
    request_id: str
    endpoint: str
    status_code: int
    credits: int
    occurred_at: datetime
    key_id: str | None = None
    latency_ms: int | None = None  # not billed; carried for the usage read model


@value_type
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


@value_type
class AdjustBalance:
    account_id: str
    command_id: str
    amount: int
    reason: str
    occurred_at: datetime
    allow_negative: bool = False  # may take `available` below -credit_limit


@value_type
class RefundRequest:
    account_id: str
    command_id: str
    request_id: str
    amount: int | None  # None: all that is left refundable
    reason: str
    occurred_at: datetime


@value_type
class VoidGrant:
    account_id: str
    command_id: str
    grant_id: str
    occurred_at: datetime


@value_type
class PlaceHold:
    account_id: str
    command_id: str
    hold_id: str
    amount: int
    expires_at: datetime
    occurred_at: datetime


@value_type
class CaptureHold:
    account_id: str
    command_id: str
    hold_id: str
    amount: int | None  # None: all that is held
    request_id: str
    endpoint: str
    occurred_at: datetime


@value_type
class ReleaseHold:
    account_id: str
    command_id: str
    hold_id: str
    occurred_at: datetime


@value_type
class ChangeSettings:
    """Only the fields given change (`None` leaves a field as it is)."""

    account_id: str
    command_id: str
    occurred_at: datetime
    low_balance_threshold: int | None = None
    auto_reload: AutoReload | None = None
    credit_limit: int | None = None
    grant_expiring_notice_s: int | None = None
    clear_low_balance_threshold: bool = False
    clear_auto_reload: bool = False


@value_type
class ExpireDue:
    """Sent by the scheduler: apply every expiry due at `occurred_at` (buckets and holds)."""

    account_id: str
    command_id: str
    occurred_at: datetime


Command = (
    ConsumeUsage
    | GrantCredits
    | AdjustBalance
    | RefundRequest
    | VoidGrant
    | PlaceHold
    | CaptureHold
    | ReleaseHold
    | ChangeSettings
    | ExpireDue
)
