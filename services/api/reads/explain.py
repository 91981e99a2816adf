"""The explain read: the account's ledger as it stood at an instant, read as the customer,
turned back into the core's entries and explained by services/core/explain.py.

Which entries count at `as_of` on which clock is services/history/as_of.py's choice
(`entries_as_of`, the one `creditledger balance --as-of --by` folds), so the explanation and the
point-in-time balance speak of the same entries. Without `as_of`, by ledger time, every entry
counts (the ledger as it stands: no clock of ours cuts off one just recorded) and the instant
explained is now.

`CoreEntries` reads the ledger's shape (the topic's and the table's, projections/ledger_rows.py)
back into `LedgerEntry`: a grant entry carries its bucket's terms (`bucket_terms`, the expiry),
so it gets its `Bucket`; a consume or refund its request id (from `source`). The ledger does not
carry a hold's expiry, so holds are not rebuilt (explain does not explain `reserved`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from projections.grant_entries import ACTIVATED, GRANTED, SCHEDULED, whole
from schemas.ledger import LedgerEntryMessage
from services.core.explain import RECENT_CONSUMES, ExplainFold, Explanation
from services.core.model import DEFAULT_PRIORITY, Bucket, BucketKind, EntryReason, LedgerEntry
from services.history.as_of import TimeAxis, entries_as_of
from services.platform.postgres import DbConnection

EVERY_ENTRY = datetime.max.replace(tzinfo=UTC)
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


async def explain_at(
    conn: DbConnection,
    account_id: str,
    as_of: datetime | None,
    by: TimeAxis,
    now: datetime,
    recent: int = RECENT_CONSUMES,
) -> Explanation:
    """The explanation at `as_of` (None: now) on the `by` clock, on a connection reading as the
    customer (`freshness.fresh_read`)."""
    chosen = as_of or (EVERY_ENTRY if by == "recorded" else now)
    fold, core = ExplainFold(account_id, recent), CoreEntries()
    async for message in entries_as_of(conn, account_id, chosen, by):
        fold.add(core.of(message))
    return fold.finish(as_of or now)
