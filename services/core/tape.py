"""The tape a decision is written on: it numbers entries and evolves a working state, so each
entry's `seq` and `balance_after` follow from the ones before it."""

from __future__ import annotations

from datetime import datetime

from services.core.evolve import evolve
from services.core.model import (
    AccountState,
    AlertKind,
    AlertRaised,
    Bucket,
    CommandRejected,
    EntryReason,
    Event,
    Hold,
    LedgerEntry,
    MetadataValue,
)


class Tape:
    def __init__(self, state: AccountState, recorded_at: datetime) -> None:
        self.state = state
        self.recorded_at = recorded_at
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.state = evolve(self.state, event)
        self.events.append(event)

    def entry(
        self,
        *,
        delta: int,
        reason: EntryReason,
        source: str,
        occurred_at: datetime,
        bucket: Bucket | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        reserved_delta: int = 0,
        grant: Bucket | None = None,
        request_id: str | None = None,
        hold: Hold | None = None,
    ) -> None:
        self.emit(
            LedgerEntry(
                account_id=self.state.account_id,
                seq=self.state.seq + 1,
                delta=delta,
                balance_after=self.state.balance + delta,
                reason=reason,
                source=source,
                bucket_grant_id=bucket.grant_id if bucket else None,
                bucket_kind=bucket.kind if bucket else None,
                metadata=metadata or {},
                occurred_at=occurred_at,
                recorded_at=self.recorded_at,
                reserved_delta=reserved_delta,
                grant=grant,
                request_id=request_id,
                hold=hold,
            )
        )

    def alert(
        self, kind: AlertKind, at: datetime, details: dict[str, MetadataValue] | None = None
    ) -> None:
        self.emit(
            AlertRaised(
                account_id=self.state.account_id,
                kind=kind,
                occurred_at=at,
                available=self.state.available,
                after_seq=self.state.seq,
                details=details or {},
            )
        )

    def reject(self, code: str, detail: str) -> None:
        self.emit(CommandRejected(self.state.account_id, code, detail))

    def bucket(self, grant_id: str | None) -> Bucket | None:
        return next((b for b in self.state.buckets if b.grant_id == grant_id), None)
