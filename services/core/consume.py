"""Consumes and refunds: usage draws buckets (drawdown.py); refunds follow the lineage back."""

from __future__ import annotations

from datetime import datetime

from services.core.drawdown import DrawPlan
from services.core.model import (
    ConsumeUsage,
    EntryReason,
    MetadataValue,
    RefundRequest,
)
from services.core.spend import quote_now
from services.core.tape import Tape


def consume(tape: Tape, usage: ConsumeUsage) -> None:
    assert usage.credits >= 0, "a call never pays the caller"
    if usage.credits == 0:
        return
    metadata: dict[str, MetadataValue] = {
        "endpoint": usage.endpoint,
        "key_id": usage.key_id,
        "status_code": usage.status_code,
    }
    charged = charge(
        tape, usage.request_id, usage.credits, usage.endpoint, usage.occurred_at, metadata
    )
    if usage.status_code >= 400 and charged > 0:
        refund_reason = "client_error" if usage.status_code < 500 else "server_error"
        refund(
            tape,
            usage.request_id,
            charged,
            usage.occurred_at,
            {**metadata, "reason": refund_reason},
        )


def charge(
    tape: Tape,
    request_id: str,
    credits: int,
    endpoint: str,
    at: datetime,
    metadata: dict[str, MetadataValue],
) -> int:
    """Consume entries for the call's whole price: one per bucket drawn, then the part no
    spendable credit covers, owed (drawdown.py). Returns the credits charged: all of them."""
    plan = quote_now(tape.state, credits, endpoint, at).plan
    write_draws(tape, plan, EntryReason.CONSUME, f"request:{request_id}", at, metadata, request_id)
    return credits


def write_draws(
    tape: Tape,
    plan: DrawPlan,
    reason: EntryReason,
    source: str,
    at: datetime,
    metadata: dict[str, MetadataValue],
    request_id: str | None = None,
) -> None:
    """One entry per bucket of the plan, then one for what is owed (tied to no grant)."""
    for bucket, amount in plan.draws:
        tape.entry(
            delta=-amount, reason=reason, source=source, occurred_at=at, bucket=bucket,
            metadata=metadata, request_id=request_id,
        )  # fmt: skip
    if plan.owed > 0:
        tape.entry(
            delta=-plan.owed, reason=reason, source=source, occurred_at=at,
            metadata={**metadata, "owed": plan.owed}, request_id=request_id,
        )  # fmt: skip


def refund(
    tape: Tape, request_id: str, amount: int, at: datetime, metadata: dict[str, MetadataValue]
) -> None:
    """Give `amount` back to the buckets the request drew from, last draw first.

    Each refund entry names the call's endpoint and consume time, and `refundable_after`, what
    is still refundable once it is applied (0: the call is now fully refunded).
    """
    consumption = tape.state.consumptions[request_id]
    assert 0 < amount <= consumption.refundable
    lineage: dict[str, MetadataValue] = {
        "endpoint": consumption.endpoint,
        "consumed_at": consumption.consumed_at.isoformat() if consumption.consumed_at else None,
    }
    left = amount
    for draw in reversed(consumption.draws):
        give = min(left, draw.amount - draw.refunded)
        if give == 0:
            continue
        bucket = tape.bucket(draw.grant_id)
        if bucket is not None and bucket.expired_at(at):
            bucket = None  # expired (even if not yet pruned): the same as closed
        extra: dict[str, MetadataValue] = {}
        if bucket is None and draw.grant_id is not None:
            # Its bucket expired or was voided: the credits come back outside any bucket.
            extra["refund_of_grant"] = draw.grant_id
        tape.entry(
            delta=give,
            reason=EntryReason.REFUND,
            source=f"refund:{request_id}",
            occurred_at=at,
            bucket=bucket,
            metadata={
                **metadata,
                **lineage,
                **extra,
                "refundable_after": consumption.refundable - (amount - left) - give,
            },
            request_id=request_id,
        )
        left -= give
        if left == 0:
            return


def refund_command(tape: Tape, command: RefundRequest) -> None:
    consumption = tape.state.consumptions.get(command.request_id)
    if consumption is None:
        tape.reject("unknown-request", f"no consume for request {command.request_id!r}")
        return
    refundable = consumption.refundable
    if refundable == 0:
        tape.reject("already-refunded", f"request {command.request_id!r} is fully refunded")
        return
    amount = command.amount if command.amount is not None else refundable
    if amount > refundable:
        tape.reject(
            "refund-exceeds-consumed",
            f"refund of {amount} but only {refundable} of {command.request_id!r} is refundable",
        )
        return
    metadata: dict[str, MetadataValue] = {
        "reason": command.reason,
        "command_id": command.command_id,
    }
    refund(tape, command.request_id, amount, command.occurred_at, metadata)
