"""`credits.commands.v1`: billing commands, discriminated by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import (
    AccountId,
    ContractModel,
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


Command = Annotated[GrantCommand | AdjustmentCommand, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[GrantCommand | AdjustmentCommand] = TypeAdapter(Command)
