"""The answers' shapes, as the contract names them (camelCase, as on the wire).

TypedDicts, not classes: an answer is the API's JSON unchanged, so a field the server adds later
is there too. `total=False`: fields that a given answer may leave out are not promised.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Json = dict[str, Any]


class Bucket(TypedDict, total=False):
    kind: str
    amount: int
    balance: int


class Balance(TypedDict, total=False):
    accountId: str
    balance: int
    reserved: int
    available: int
    scheduled: int
    overage: int
    grantedTotal: int
    consumedTotal: int
    buckets: list[Bucket]
    resetAt: str | None
    lastUpdated: str | None
    ledgerSeq: int


class Check(TypedDict, total=False):
    """`allowed` false is the API's 402 (the problem's `available`, `detail`, … kept)."""

    allowed: bool
    available: int
    cost: int
    endpoint: str | None
    owed: int
    ledgerSeq: int
    detail: str


class GrantWhy(TypedDict, total=False):
    grantId: str
    kind: str
    granted: int
    consumed: int
    refunded: int
    expired: int
    voided: int
    remaining: int
    drawOrder: int
    why: str


class BalanceExplained(TypedDict, total=False):
    """Why the balance is what it is (`GET /v1/credits/balance/explain`)."""

    accountId: str
    asOf: str | None
    by: str
    balance: int
    overage: int
    overageWhy: str
    unbucketed: int
    scheduled: int
    grants: list[GrantWhy]
    recentConsumes: list[Json]
    ledgerSeq: int


class DailyBalance(TypedDict):
    day: str
    balance: int
    change: int


class BalanceHistory(TypedDict, total=False):
    accountId: str
    by: str
    days: list[DailyBalance]
    ledgerSeq: int


class AccountSettings(TypedDict, total=False):
    accountId: str
    lowBalanceThreshold: int | None
    autoReload: Json | None  # {threshold, amount, maxPerDay}
    creditLimit: int
    ledgerSeq: int


class Alert(TypedDict, total=False):
    type: str
    at: str
    seq: int
    data: Json


class RecentAlerts(TypedDict, total=False):
    accountId: str
    since: str
    alerts: list[Alert]
    basis: str
    ledgerSeq: int


class LedgerEntry(TypedDict, total=False):
    """The contract's ledger entry (its field names, as on the topic)."""

    id: str
    account_id: str
    seq: int
    delta: int
    balance_after: int
    reason: str
    source: str
    bucket: Json | None
    metadata: Json
    occurred_at: str
    recorded_at: str


class LedgerPage(TypedDict, total=False):
    data: list[LedgerEntry]
    page: int
    limit: int
    hasMore: bool
    nextCursor: str | None
    ledgerSeq: int


class GrantsPage(TypedDict, total=False):
    data: list[Json]
    limit: int
    nextPage: str | None
    ledgerSeq: int


class Accepted(TypedDict):
    """202 of an admin command: its outcome is `command(commandId)`."""

    commandId: str


class CommandStatus(TypedDict, total=False):
    commandId: str
    accountId: str | None
    status: Literal["pending", "applied", "rejected"]
    reason: str | None


class NewKey(TypedDict, total=False):
    keyId: str
    secret: str
    expiresAt: str | None


class AdminAccount(TypedDict, total=False):
    accountId: str
    name: str | None
    registered: bool
    createdAt: str | None
    balance: int
    available: int
    overage: int
    reserved: int
    scheduled: int
    ledgerSeq: int
    lastActivityAt: str | None


class AccountsPage(TypedDict, total=False):
    data: list[AdminAccount]
    limit: int
    hasMore: bool
    nextPage: str | None


class Webhook(TypedDict, total=False):
    id: str
    url: str
    events: list[str]
    description: str
    createdAt: str


class NewWebhook(Webhook, total=False):
    secret: str  # shown in this answer only


class WebhookList(TypedDict):
    data: list[Webhook]


class DeliveryPage(TypedDict, total=False):
    data: list[Json]  # {eventId, eventType, accountId, status, tries, …, attempts}
    hasMore: bool
    nextCursor: str | None


class DashboardSession(TypedDict, total=False):
    url: str  # <origin>/dashboard#session=<token>
    expiresAt: str


class SessionKey(TypedDict, total=False):
    accountId: str
    keyId: str
    secret: str
    expiresAt: str
