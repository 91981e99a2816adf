"""decide(state, command, recorded_at) -> entries. Pure: same inputs, same entries.

Rules (see services/core/README.md):
- a consume draws buckets by lowest priority, then soonest expiry, then oldest grant, one entry
  per bucket touched; what no bucket covers is one entry without a bucket (overdraft);
- a call answered 4xx/5xx is consumed and refunded at once, each refund back to its bucket;
- a free call (0 credits) writes nothing.
"""

from __future__ import annotations

from datetime import datetime

from services.core.evolve import evolve
from services.core.model import (
    AccountState,
    AdjustBalance,
    Bucket,
    Command,
    ConsumeUsage,
    EntryReason,
    GrantCredits,
    LedgerEntry,
    MetadataValue,
)


class _Tape:
    """Appends entries and evolves a working state, so each entry's seq/balance_after is right."""

    def __init__(self, state: AccountState, recorded_at: datetime) -> None:
        self.state = state
        self.recorded_at = recorded_at
        self.entries: list[LedgerEntry] = []

    def append(
        self,
        *,
        delta: int,
        reason: EntryReason,
        source: str,
        occurred_at: datetime,
        bucket: Bucket | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        grant: Bucket | None = None,
    ) -> None:
        entry = LedgerEntry(
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
            grant=grant,
        )
        self.state = evolve(self.state, entry)
        self.entries.append(entry)


def decide(state: AccountState, command: Command, recorded_at: datetime) -> tuple[LedgerEntry, ...]:
    assert command.account_id == state.account_id, "command routed to another account"
    tape = _Tape(state, recorded_at)
    if isinstance(command, ConsumeUsage):
        _consume(tape, command)
    elif isinstance(command, GrantCredits):
        _grant(tape, command)
    else:
        _adjust(tape, command)
    return tuple(tape.entries)


def _consume(tape: _Tape, usage: ConsumeUsage) -> None:
    assert usage.credits >= 0, "a call never pays the caller"
    if usage.credits == 0:
        return
    metadata: dict[str, MetadataValue] = {
        "endpoint": usage.endpoint,
        "key_id": usage.key_id,
        "status_code": usage.status_code,
    }
    draws = _drawdown(tape.state.buckets, usage.credits, usage.endpoint, usage.occurred_at)
    for bucket, amount in draws:
        tape.append(
            delta=-amount,
            reason=EntryReason.CONSUME,
            source=f"request:{usage.request_id}",
            occurred_at=usage.occurred_at,
            bucket=bucket,
            metadata=metadata,
        )
    if usage.status_code >= 400:
        refund_reason = "client_error" if usage.status_code < 500 else "server_error"
        for bucket, amount in draws:
            tape.append(
                delta=amount,
                reason=EntryReason.REFUND,
                source=f"refund:{usage.request_id}",
                occurred_at=usage.occurred_at,
                bucket=bucket,
                metadata={**metadata, "reason": refund_reason},
            )


def _drawdown(
    buckets: tuple[Bucket, ...], credits: int, endpoint: str, at: datetime
) -> list[tuple[Bucket | None, int]]:
    """Split `credits` over usable buckets; the uncovered rest is drawn from no bucket."""
    usable = sorted((b for b in buckets if b.usable_for(endpoint, at)), key=Bucket.drawdown_key)
    draws: list[tuple[Bucket | None, int]] = []
    left = credits
    for bucket in usable:
        if left == 0:
            break
        amount = min(left, bucket.remaining)
        draws.append((bucket, amount))
        left -= amount
    if left > 0:
        draws.append((None, left))
    assert sum(amount for _, amount in draws) == credits, "drawdown lost credits"
    return draws


def _grant(tape: _Tape, grant: GrantCredits) -> None:
    assert grant.amount > 0, "a grant adds credits"
    bucket = Bucket(
        grant_id=grant.command_id,
        kind=grant.kind,
        priority=grant.priority,
        effective_at=grant.effective_at,
        expires_at=grant.expires_at,
        granted_seq=tape.state.seq + 1,
        remaining=grant.amount,
        applies_to=grant.applies_to,
    )
    tape.append(
        delta=grant.amount,
        reason=EntryReason.GRANT,
        source=grant.source or f"grant:{grant.command_id}",
        occurred_at=grant.occurred_at,
        bucket=bucket,
        metadata={"name": grant.name} if grant.name else {},
        grant=bucket,
    )


def _adjust(tape: _Tape, adjustment: AdjustBalance) -> None:
    assert adjustment.amount != 0, "an adjustment changes the balance"
    tape.append(
        delta=adjustment.amount,
        reason=EntryReason.ADJUSTMENT,
        source=f"adjustment:{adjustment.command_id}",
        occurred_at=adjustment.occurred_at,
        metadata={"reason": adjustment.reason},
    )
