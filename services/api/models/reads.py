"""Customer reads' bodies (`/v1/credits/...`, `/v1/usage`, `/v1/account/summary`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from services.api.models import CamelModel, WireModel

SEQ = "the account's last ledger seq this answer reflects (also `X-Ledger-Seq`)"


class BucketBalance(CamelModel):
    kind: str = Field(description="subscription, purchased, gift, promotional, unbucketed, overage")
    amount: int
    balance: int


class Balance(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "accountId": "acct_42", "balance": 480, "reserved": 20, "available": 460,
                "scheduled": 0, "overage": 0, "grantedTotal": 500, "consumedTotal": 20,
                "buckets": [{"kind": "subscription", "amount": 500, "balance": 480}],
                "resetAt": "2026-12-01T00:00:00Z", "lastUpdated": "2026-11-21T10:00:01Z",
                "ledgerSeq": 17,
            }]
        }
    )  # fmt: skip
    account_id: str
    balance: int = Field(description="spendable now; below zero when owed")
    reserved: int = Field(description="held by open holds")
    available: int = Field(description="balance minus reserved (also `X-Credits-Remaining`)")
    scheduled: int = Field(description="credit of grants not yet effective")
    overage: int = Field(ge=0, description="owed")
    granted_total: int
    consumed_total: int = Field(description="consumes minus refunds")
    buckets: list[BucketBalance] = Field(description="their balances add up to `balance`")
    reset_at: str | None = Field(description="earliest expiry of an effective subscription grant")
    last_updated: str | None
    ledger_seq: int = Field(description=SEQ)


class Check(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"allowed": True, "available": 460, "cost": 5,
                          "endpoint": "POST /v1/scanner/scan", "owed": 0, "ledgerSeq": 17}]
        }
    )  # fmt: skip
    allowed: bool
    available: int = Field(description="what the call could draw on now")
    cost: int
    endpoint: str | None
    owed: int = Field(description="what the call would leave owed")
    ledger_seq: int = Field(description=SEQ)


class ActivityDay(CamelModel):
    day: str = Field(description="UTC day, YYYY-MM-DD")
    scans: int
    credits: int = Field(description="net of refunds")
    refunds: int


class Activity(CamelModel):
    from_: str | None = Field(alias="from")
    to: str | None
    days: list[ActivityDay]
    ledger_seq: int = Field(description=SEQ)


class EntryBucket(WireModel):
    grant_id: str
    kind: str | None


class EntryRequest(WireModel):
    """`expand=request`: the usage event a consume charged."""

    request_id: str
    endpoint: str | None
    key_id: str | None
    status_code: int | None
    occurred_at: str | None
    recorded_at: str | None
    first_seq: int | None


class LedgerEntry(WireModel):
    """A ledger entry, named as the contract names it (snake_case, as on `credits.ledger.v1`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "id": "0b7e3f1c-5d2a-4f8e-9c61-2a4b7d9e0f13", "account_id": "acct_42",
                "seq": 17, "delta": -1, "balance_after": 480, "reason": "consume",
                "source": "request:5b0c", "bucket": {"grant_id": "g_1", "kind": "subscription"},
                "metadata": {"endpoint": "POST /v1/scanner/scan", "key_id": "key_7",
                             "status_code": 200},
                "reserved_delta": 0, "occurred_at": "2026-11-21T10:00:00Z",
                "recorded_at": "2026-11-21T10:00:00.120Z",
            }]
        }
    )  # fmt: skip
    id: str
    account_id: str
    seq: int
    delta: int
    balance_after: int
    reason: str = Field(description="grant, consume, refund, adjustment, expiry, void, hold, ...")
    source: str
    bucket: EntryBucket | None
    metadata: dict[str, Any] | None
    reserved_delta: int
    occurred_at: str
    recorded_at: str
    request: EntryRequest | None = None


class LedgerPage(CamelModel):
    data: list[LedgerEntry]
    page: int
    limit: int
    has_more: bool
    next_cursor: str | None
    ledger_seq: int = Field(description=SEQ)


class GrantSchedule(CamelModel):
    effective_at: str | None
    expires_at: str | None


class Grant(CamelModel):
    id: str
    name: str | None
    bucket: str = Field(description="the bucket kind")
    priority: int | None
    amount: int
    remaining: int
    source: str
    state: str = Field(description="active, scheduled, expired or voided")
    archived: bool
    schedule: GrantSchedule
    applies_to: list[str] | None
    metadata: dict[str, Any]
    granted_at: str | None
    granted_seq: int
    closed_seq: int | None
    balance: int | None = Field(None, description="with include_balance")
    ledger: list[LedgerEntry] | None = Field(None, description="with include_ledgers")
    ledger_has_more: bool | None = Field(None, description="with include_ledgers")


class GrantRead(Grant):
    ledger_seq: int = Field(description=SEQ)


class GrantsPage(CamelModel):
    data: list[Grant]
    limit: int
    next_page: str | None
    ledger_seq: int = Field(description=SEQ)


class UsageRow(CamelModel):
    key: str = Field(description="the endpoint, the day (YYYY-MM-DD) or the month (YYYY-MM)")
    requests: int
    successful_requests: int
    failed_requests: int
    credits: int
    latency_ms_avg: float | None
    latency_ms_max: int | None


class Usage(CamelModel):
    group_by: Literal["endpoint", "day", "month"]
    from_: str | None = Field(alias="from")
    to: str | None
    rows: list[UsageRow]
    has_more: bool
    ledger_seq: int = Field(description=SEQ)


class Subscription(CamelModel):
    amount: int
    balance: int
    reset_at: str | None


class PeriodUsage(CamelModel):
    period: Literal["daily", "monthly", "yearly"]
    period_start: str
    period_end: str
    total_requests: int
    successful_requests: int
    failed_requests: int
    credits_consumed: int
    requests_by_endpoint: dict[str, int]


class Summary(CamelModel):
    account_id: str
    name: str | None
    account_created_at: str | None
    credit_balance: Balance
    overage: int
    subscription: Subscription | None
    usage: PeriodUsage
    total_requests_all_time: int
    ledger_seq: int = Field(description=SEQ)
