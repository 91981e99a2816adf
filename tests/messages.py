"""Builders for the contract's messages, for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def at(minutes: float = 0) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def grant(account_id: str, amount: int, command_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "grant", "command_id": command_id, "account_id": account_id,
            "occurred_at": at(), "amount": amount, **extra}  # fmt: skip


def usage(account_id: str, request_id: str, status: int = 200, **extra: Any) -> dict[str, Any]:
    return {"request_id": request_id, "account_id": account_id, "key_id": "key_1",
            "endpoint": "POST /v1/scanner/scan", "status_code": status, "occurred_at": at(1),
            **extra}  # fmt: skip


def command(kind: str, account_id: str, command_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "command_id": command_id, "account_id": account_id,
            "occurred_at": at(2), **fields}  # fmt: skip
