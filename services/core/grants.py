"""Grants: credit that is spendable from `effective_at` on, and pays what is owed first.

A grant effective at or before its command's instant is spendable at once. One effective later is
scheduled: its grant entry has delta 0 (`scheduled` in metadata), and the credit arrives with
an activation entry at `effective_at` in event time (expiry.expire_due runs it, as it runs
expiries), so a replay writes the same ledger. When a grant becomes spendable while something is
owed, it pays that first: its bucket gets `amount - paid` and an entry tied to no grant
(`pays_overage`) brings the pot back up by `paid`. Credit that was already spendable pays
nothing: it did not cover those calls.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.core.model import (
    Bucket,
    EntryReason,
    GrantCredits,
    MetadataValue,
    VoidGrant,
)
from services.core.tape import Tape


def open_grant(tape: Tape, grant: GrantCredits) -> None:
    assert grant.amount > 0, "a grant adds credits"
    if tape.bucket(grant.command_id) is not None:
        tape.reject("grant-exists", f"grant {grant.command_id!r} is already open")
        return
    if grant.expires_at is not None and grant.expires_at <= max(
        grant.occurred_at, grant.effective_at
    ):
        # Credits that would be gone before they arrive: refused, not granted-and-expired.
        tape.reject("grant-expired", f"grant {grant.command_id!r} expires before it applies")
        return
    scheduled = grant.effective_at > grant.occurred_at
    bucket = Bucket(
        grant_id=grant.command_id,
        kind=grant.kind,
        priority=grant.priority,
        effective_at=grant.effective_at,
        expires_at=grant.expires_at,
        granted_seq=tape.state.seq + 1,
        remaining=0,
        applies_to=grant.applies_to,
        granted=grant.amount,
        pending=grant.amount,
        source=grant.source or f"grant:{grant.command_id}",
    )
    metadata: dict[str, MetadataValue] = {"name": grant.name} if grant.name else {}
    metadata.update(grant.metadata)
    metadata["granted"] = grant.amount
    if scheduled:
        metadata["scheduled"] = grant.amount
        _grant_entry(tape, bucket, 0, grant.occurred_at, metadata)
        return
    _make_spendable(tape, bucket, grant.occurred_at, metadata)


def activate(tape: Tape, grant_id: str, at: datetime) -> None:
    """A scheduled grant's `effective_at` has come: its credit becomes spendable."""
    bucket = tape.bucket(grant_id)
    assert bucket is not None and bucket.scheduled and bucket.effective_at <= at
    _make_spendable(tape, bucket, bucket.effective_at, {"activated": bucket.granted})


def _make_spendable(
    tape: Tape, bucket: Bucket, at: datetime, metadata: dict[str, MetadataValue]
) -> None:
    paid = min(bucket.pending, tape.state.overage)
    spendable = replace(bucket, remaining=bucket.pending - paid, pending=0)
    _grant_entry(tape, spendable, spendable.remaining, at, metadata)
    if paid > 0:
        tape.entry(
            delta=paid, reason=EntryReason.GRANT, source=bucket.source, occurred_at=at,
            metadata={"pays_overage": paid, "grant_id": bucket.grant_id},
        )  # fmt: skip


def _grant_entry(
    tape: Tape, bucket: Bucket, delta: int, at: datetime, metadata: dict[str, MetadataValue]
) -> None:
    tape.entry(
        delta=delta, reason=EntryReason.GRANT, source=bucket.source, occurred_at=at,
        bucket=bucket, metadata=metadata, grant=bucket,
    )  # fmt: skip


def void_grant(tape: Tape, command: VoidGrant) -> None:
    """The grant's remainder leaves the account; a scheduled grant never arrives."""
    bucket = tape.bucket(command.grant_id)
    if bucket is None:
        tape.reject("unknown-grant", f"no open grant {command.grant_id!r}")
        return
    metadata: dict[str, MetadataValue] = {"command_id": command.command_id}
    if bucket.scheduled:
        metadata["scheduled"] = bucket.pending
    tape.entry(
        delta=-bucket.remaining,
        reason=EntryReason.VOID,
        source=f"void:{command.grant_id}",
        occurred_at=command.occurred_at,
        bucket=bucket,
        metadata=metadata,
    )
