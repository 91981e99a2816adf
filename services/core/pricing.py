"""The price book: credits per call by endpoint, used when a usage event carries no `credits`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PriceBook:
    version: str
    credits_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    default_credits: int = 1

    def price(self, endpoint: str) -> int:
        credits = self.credits_by_endpoint.get(endpoint, self.default_credits)
        assert credits >= 0, "a price book never pays the caller"
        return credits


DEFAULT_PRICE_BOOK = PriceBook(
    version="2026-11-01",
    credits_by_endpoint={
        "POST /v1/scanner/scan": 1,
        "POST /v1/scanner/deep-scan": 5,
        "GET /v1/reports": 0,
    },
    default_credits=1,
)
