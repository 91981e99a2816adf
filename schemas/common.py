"""Field types shared by every contract model."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

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


# The instants a contract field may name, in UTC: a day inside what Python's datetime holds at
# either end. `9999-12-31T23:59:59-23:59` is valid ISO-8601 text, but its UTC value lies in year
# 10000; `0001-01-01T00:00:00+01:00` lies before year 1. Converting either to UTC raises
# OverflowError, which a consumer normalising to UTC would hit on every restart. The day of
# headroom lets any arithmetic of a day (the next midnight, a day's window) stay in range too.
EARLIEST_INSTANT = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST_INSTANT = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
# Any instant in years 2..9998 lies in range whatever its offset (under a day either way).
_SAFE_YEARS_START, _SAFE_YEARS_END = EARLIEST_INSTANT.year + 1, LATEST_INSTANT.year
_RANGE_TEXT = "between 0001-01-02T00:00:00Z and 9999-12-30T23:59:59.999999Z (in UTC)"


def _within_utc_range(value: datetime) -> datetime:
    if _SAFE_YEARS_START <= value.year < _SAFE_YEARS_END:
        return value  # an offset is under a day: no year in between can leave the range
    offset = value.utcoffset()
    assert offset is not None, "AwareDatetime has an offset"
    try:
        utc = value.replace(tzinfo=None) - offset  # what astimezone(UTC) computes, unbounded
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc.replace(tzinfo=UTC) <= LATEST_INSTANT:
        raise PydanticCustomError("datetime_out_of_range", f"the instant must lie {_RANGE_TEXT}")
    return value


# An offset is required; values are normalised to UTC by the consumer, and bounded so they can.
UtcTime = Annotated[
    AwareDatetime, BeforeValidator(_iso_text_only), AfterValidator(_within_utc_range)
]


class ContractModel(BaseModel):
    """Unknown fields are refused: a typo in a producer must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
