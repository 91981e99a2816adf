"""Field types shared by every contract model."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

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
ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_text_only(value: object) -> object:
    # Lax datetime parsing also reads Unix timestamps (0, "0", 1.5e9) as instants: a record
    # with "occurred_at": 0 would become a 1970 event no producer meant. The contract says
    # ISO-8601 text; datetime objects (built in Python) pass as they are.
    if isinstance(value, str) and ISO_INSTANT.match(value):
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("an ISO-8601 date and time with an offset, e.g. 2026-11-21T10:00:00Z")


# An offset is required; values are normalised to UTC by the consumer.
UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_text_only)]


class ContractModel(BaseModel):
    """Unknown fields are refused: a typo in a producer must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
