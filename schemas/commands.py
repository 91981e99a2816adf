"""`credits.commands.v1`: billing commands, discriminated by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import (
    AccountId,
    ContractModel,
    Credits,
    IdempotencyId,
    PositiveCredits,
    ShortText,
    SignedCredits,
    UtcTime,
)

BucketKindName = Literal["subscription", "purchased", "gift", "promotional"]


class CommandBase(ContractModel):
    command_id: IdempotencyId
    account_id: AccountId
    occurred_at: UtcTime


class GrantCommand(CommandBase):
    type: Literal["grant"]
    amount: PositiveCredits
    name: ShortText = ""
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)
    bucket: BucketKindName = "purchased"
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] | None = None
    source: ShortText = ""
    effective_at: UtcTime | None = None  # absent: effective from occurred_at
    expires_at: UtcTime | None = None
    applies_to: (
        Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=100)] | None
    ) = None


class AdjustmentCommand(CommandBase):
    type: Literal["adjustment"]
    amount: SignedCredits
    reason: ShortText = ""
    # A negative adjustment may take `available` below -credit_limit only when it says so.
    allow_negative: Annotated[bool, Field(strict=True)] = False


class RefundCommand(CommandBase):
    type: Literal["refund"]
    request_id: IdempotencyId
    amount: PositiveCredits | None = None  # absent: all that is left refundable
    reason: ShortText = ""


class VoidGrantCommand(CommandBase):
    type: Literal["void_grant"]
    grant_id: IdempotencyId


class HoldCommand(CommandBase):
    type: Literal["hold"]
    hold_id: IdempotencyId
    amount: PositiveCredits
    expires_at: UtcTime


class CaptureCommand(CommandBase):
    type: Literal["capture"]
    hold_id: IdempotencyId
    amount: Credits | None = None  # absent: all that is held
    request_id: IdempotencyId
    endpoint: Annotated[str, Field(min_length=1, max_length=256)]


class ReleaseCommand(CommandBase):
    type: Literal["release"]
    hold_id: IdempotencyId


class AutoReloadSettings(ContractModel):
    threshold: Credits
    amount: PositiveCredits
    max_per_day: Annotated[int, Field(ge=1, le=1000, strict=True)]


class AccountSettingsCommand(CommandBase):
    """Fields left out keep their value; an explicit null clears a threshold or auto-reload."""

    type: Literal["account_settings"]
    low_balance_threshold: Credits | None = None
    auto_reload: AutoReloadSettings | None = None
    credit_limit: Credits | None = None
    # How long before a grant with credit left expires its `grant_expiring` alert goes out
    # (default 3 days; 0 turns it off; null or absent keeps the current value).
    grant_expiring_notice_s: Annotated[int, Field(ge=0, le=366 * 86_400, strict=True)] | None = None


class ExpireCommand(CommandBase):
    """Published by the writer's scheduler: apply the expiries due at `occurred_at`."""

    type: Literal["expire"]


AnyCommand = (
    GrantCommand
    | AdjustmentCommand
    | RefundCommand
    | VoidGrantCommand
    | HoldCommand
    | CaptureCommand
    | ReleaseCommand
    | AccountSettingsCommand
    | ExpireCommand
)
Command = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(Command)
