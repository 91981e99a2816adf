"""The ledger's entries (the topic's and the table's shape, `LedgerEntryMessage`) read back into
the core's (`LedgerEntry`) and, for what the core's due rules add at an instant, forth again.

The point-in-time balance (as_of.py) and the explain read (services/api/reads/explain.py) both
hand the core the entries they chose, so the core's own rules (expiry.expire_due: activations of
scheduled grants, expiries) decide what event time has made due at the instant, as they do for
the live balance and `/check` (services/core/spend.py `due_state`).

A grant entry carries its bucket's terms (`bucket_terms`, the expiry), so it gets its `Bucket`;
a consume or refund its request id (from `source`). The ledger does not carry a hold's expiry,
so holds are not rebuilt (an expired hold still counts in `reserved` until its release entry).
"""

from __future__ import annotations

from projections.grant_entries import ACTIVATED, GRANTED, SCHEDULED, whole
from schemas.ledger import EntryBucket, LedgerEntryMessage
from services.core.model import DEFAULT_PRIORITY, Bucket, BucketKind, EntryReason, LedgerEntry

_REQUEST_SOURCES = {EntryReason.CONSUME: "request:", EntryReason.REFUND: "refund:"}


class CoreEntries:
    """Ledger messages (one account's, in seq order) as the core's entries."""

    def __init__(self) -> None:
        self._opened_at_seq: dict[str, int] = {}  # a grant's opening entry: "oldest grant"

    def of(self, message: LedgerEntryMessage) -> LedgerEntry:
        reason = EntryReason(message.reason)
        bucket = message.bucket
        kind = BucketKind(bucket.kind) if bucket is not None else None
        grant = self._grant(message, kind) if reason is EntryReason.GRANT else None
        prefix = _REQUEST_SOURCES.get(reason)
        request_id = None
        if prefix is not None and message.source.startswith(prefix):
            request_id = message.source.removeprefix(prefix)
        return LedgerEntry(
            account_id=message.account_id, seq=message.seq, delta=message.delta,
            balance_after=message.balance_after, reason=reason, source=message.source,
            bucket_grant_id=bucket.grant_id if bucket is not None else None, bucket_kind=kind,
            metadata=message.metadata, occurred_at=message.occurred_at,
            recorded_at=message.recorded_at, reserved_delta=message.reserved_delta,
            grant=grant, request_id=request_id,
        )  # fmt: skip

    def _grant(self, message: LedgerEntryMessage, kind: BucketKind | None) -> Bucket | None:
        bucket = message.bucket
        if bucket is None or kind is None:
            return None  # an overage payment: no bucket of its own
        metadata = message.metadata
        activated = whole(metadata, ACTIVATED)
        if activated is None:  # the opening entry
            self._opened_at_seq[bucket.grant_id] = message.seq
        granted = whole(metadata, GRANTED)
        return Bucket(
            grant_id=bucket.grant_id, kind=kind,
            priority=DEFAULT_PRIORITY[kind] if bucket.priority is None else bucket.priority,
            effective_at=bucket.effective_at or message.occurred_at,
            expires_at=bucket.expires_at,
            granted_seq=self._opened_at_seq.get(bucket.grant_id, message.seq),
            remaining=message.delta,
            applies_to=tuple(bucket.applies_to) if bucket.applies_to is not None else None,
            granted=activated or (message.delta if granted is None else granted),
            pending=(whole(metadata, SCHEDULED) or 0) if activated is None else 0,
            source=message.source,
        )  # fmt: skip


def to_message(entry: LedgerEntry) -> LedgerEntryMessage:
    """A core entry in the contract's ledger shape: the entries the due rules add here, and
    the model of the bytes the writer publishes (services/writer/wire.py `entry_to_json_bytes`,
    held equal to this by tests/unit/test_writer_wire.py)."""
    bucket = None
    if entry.bucket_grant_id is not None and entry.bucket_kind is not None:
        bucket = EntryBucket(grant_id=entry.bucket_grant_id, kind=entry.bucket_kind.value)
        if (terms := entry.grant) is not None:
            bucket = EntryBucket(
                grant_id=terms.grant_id, kind=terms.kind.value, expires_at=terms.expires_at,
                effective_at=terms.effective_at, priority=terms.priority,
                applies_to=list(terms.applies_to) if terms.applies_to is not None else None,
            )  # fmt: skip
    return LedgerEntryMessage(
        id=entry.entry_id, account_id=entry.account_id, seq=entry.seq, delta=entry.delta,
        balance_after=entry.balance_after, reason=entry.reason.value, source=entry.source,
        bucket=bucket, metadata=dict(entry.metadata), reserved_delta=entry.reserved_delta,
        occurred_at=entry.occurred_at, recorded_at=entry.recorded_at,
    )  # fmt: skip
