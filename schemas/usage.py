"""`credits.usage.v1`: one message per billable API call."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from schemas.common import AccountId, ContractModel, Credits, IdempotencyId, UtcTime


class UsageEvent(ContractModel):
    """Fields the contract does not name are ignored (producers may add their own: forward
    compatibility) and stay in the raw Kafka record; the named fields are validated strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: IdempotencyId
    account_id: AccountId
    key_id: Annotated[str, Field(max_length=128)] | None = None
    endpoint: Annotated[str, Field(min_length=1, max_length=256)]
    status_code: Annotated[int, Field(ge=100, le=599, strict=True)]
    occurred_at: UtcTime
    credits: Credits | None = None  # absent: the price book prices the call by endpoint
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000, strict=True)] | None = None
