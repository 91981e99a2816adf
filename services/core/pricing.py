"""The price book: credits per call by endpoint, for a usage event that carries no `credits`.

Prices are data (contract, "Price book"): an operator sets versions, each with an
`effective_at`, a `default_credits` and `prices` {endpoint: credits}. A call is priced by the
version in force at its `occurred_at`: of the versions with `effective_at <= occurred_at`, the
one that starts last (at the same instant, the later version). Versions are immutable and never
start in the past (the API and the CLI refuse that), so the version in force at a call's time
is known before the call reaches the log, and a replay prices every call the same.

Before any version is in force the built-in book `DEFAULT_PRICE_BOOK` applies: version 0.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.core.value import value_type


@dataclass(frozen=True, slots=True)  # frozen at run time too: shared as a default
class PriceBook:
    """One set of prices: `credits_by_endpoint`, else `default_credits`."""

    version: str
    credits_by_endpoint: Mapping[str, int] = field(default_factory=dict)
    default_credits: int = 1

    def price(self, endpoint: str, at: datetime | None = None) -> int:
        """The call's price; `at` is accepted (and ignored) so a book prices like a schedule."""
        credits = self.credits_by_endpoint.get(endpoint, self.default_credits)
        assert credits >= 0, "a price book never pays the caller"
        return credits


DEFAULT_PRICE_BOOK = PriceBook(
    version="0",
    credits_by_endpoint={
        "POST /v1/scanner/scan": 1,
        "POST /v1/scanner/deep-scan": 5,
        "GET /v1/reports": 0,
    },
    default_credits=1,
)


@value_type
class PriceVersion:
    """A version of the price book as stored: numbered 1, 2, 3… in the order they were set."""

    version: int
    effective_at: datetime  # aware, UTC
    default_credits: int
    prices: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.version > 0, "version 0 is the built-in book"
        assert self.effective_at.utcoffset() is not None, "effective_at must be aware"
        assert self.default_credits >= 0 and all(v >= 0 for v in self.prices.values())

    @property
    def book(self) -> PriceBook:
        return PriceBook(str(self.version), self.prices, self.default_credits)


@value_type
class PriceSchedule:
    """Every version of the price book, and the built-in book before the first."""

    versions: tuple[PriceVersion, ...] = ()
    fallback: PriceBook = DEFAULT_PRICE_BOOK
    # Derived: the versions in force order, and their (effective_at, version) to bisect.
    _ordered: tuple[PriceVersion, ...] = field(init=False, repr=False, compare=False)
    _starts: tuple[tuple[datetime, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numbers = [v.version for v in self.versions]
        assert len(numbers) == len(set(numbers)), "version numbers are unique"
        ordered = tuple(sorted(self.versions, key=_start))
        object.__setattr__(self, "_ordered", ordered)  # derived once, read-only to the checker
        object.__setattr__(self, "_starts", tuple(_start(v) for v in ordered))

    def in_force(self, at: datetime) -> PriceVersion | None:
        """The version that prices a call at `at`; None before every version (version 0)."""
        if not self._starts:
            return None
        index = bisect.bisect_right(self._starts, (at, _LAST))
        return self._ordered[index - 1] if index else None

    def book_at(self, at: datetime) -> PriceBook:
        version = self.in_force(at)
        return self.fallback if version is None else version.book

    def price(self, endpoint: str, at: datetime) -> int:
        version = self.in_force(at)
        if version is None:
            return self.fallback.price(endpoint)
        credits = version.prices.get(endpoint, version.default_credits)
        assert credits >= 0, "a price book never pays the caller"
        return credits

    @property
    def latest(self) -> int:
        """The highest version number set (0: none yet)."""
        return max((v.version for v in self.versions), default=0)


_LAST = 2**63  # sorts after every version number at the same instant


def _start(version: PriceVersion) -> tuple[datetime, int]:
    return (version.effective_at, version.version)
