"""Python clients of the creditledger HTTP API: `CreditLedgerClient` (blocking, httpx.Client)
and `AsyncCreditLedgerClient` (asyncio, httpx.AsyncClient), one sans-I/O core (core.py,
endpoints.py) under both. See README.md."""

from __future__ import annotations

from services.client.aio import AsyncCreditLedgerClient
from services.client.core import NO_RETRIES, Call, ClientConfigError, RetryPolicy
from services.client.endpoints import UNSET, Endpoints
from services.client.errors import ProblemError
from services.client.sync import CreditLedgerClient

__all__ = [
    "NO_RETRIES",
    "UNSET",
    "AsyncCreditLedgerClient",
    "Call",
    "ClientConfigError",
    "CreditLedgerClient",
    "Endpoints",
    "ProblemError",
    "RetryPolicy",
]
