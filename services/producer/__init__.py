"""The producers' side: publish usage events, and meter an ASGI service with credits."""

from __future__ import annotations

from services.producer.middleware import (
    BalanceCheck,
    BalanceCheckError,
    CreditsMiddleware,
    HttpBalanceCheck,
    UsageSink,
)
from services.producer.publisher import UsagePublisher, publish_usage

__all__ = [
    "BalanceCheck",
    "BalanceCheckError",
    "CreditsMiddleware",
    "HttpBalanceCheck",
    "UsagePublisher",
    "UsageSink",
    "publish_usage",
]
