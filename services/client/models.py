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
    """`allowed` false is the API's 402 (the problem's `available` and `detail` kept)."""

    allowed: bool
    available: int
    detail: str


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


class NewWebhook(TypedDict, total=False):
    id: str
    secret: str


class DashboardSession(TypedDict, total=False):
    url: str
    expiresAt: str
