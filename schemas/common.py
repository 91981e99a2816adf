"""Field types shared by every contract model."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# One credit is the smallest unit; amounts are integers. The bound keeps every sum of a
# realistic account's entries far inside Postgres bigint (9.2e18) and JSON's exact-integer
# range (2^53 ≈ 9.0e15), so no total can silently lose precision in any client.
MAX_CREDITS = 1_000_000_000_000

AccountId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
IdempotencyId = Annotated[str, Field(min_length=1, max_length=128)]
Credits = Annotated[int, Field(ge=0, le=MAX_CREDITS, strict=True)]
PositiveCredits = Annotated[int, Field(gt=0, le=MAX_CREDITS, strict=True)]
SignedCredits = Annotated[int, Field(ge=-MAX_CREDITS, le=MAX_CREDITS, strict=True)]
ShortText = Annotated[str, Field(max_length=512)]
UtcTime = AwareDatetime  # an offset is required; values are normalised to UTC by the consumer


class ContractModel(BaseModel):
    """Unknown fields are refused: a typo in a producer must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
