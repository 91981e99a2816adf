"""What every read shares: time parameters, opaque cursors, JSON rendering of times."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Path

from services.api.problems import Problem

MAX_RANGE_DAYS = 366  # activity and usage: the widest `from`..`to` one request may span
MAX_CURSOR_PAGE = 2**31  # a cursor's page number; a larger one was not made by us
MAX_BIGINT = 2**63 - 1  # Postgres bigint: a cursor key beyond it was not made by us
# A path segment naming an object (grant, key, hold, command): 1–128 characters, no NUL
# (Postgres text cannot hold U+0000, so such an id cannot exist).
ObjectId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def parse_instant(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """An ISO-8601 date (UTC midnight; with `end`, the next midnight, so the day is included)
    or a datetime with an offset (normalised to UTC). A datetime without offset is refused."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31 as an end (the next day)
        raise Problem(422, "invalid-request", f"{name}: not an ISO-8601 date or datetime") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Problem(422, "invalid-request", f"{name}: a datetime needs an offset (e.g. Z)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise Problem(422, "invalid-request", f"{name}: out of range") from None


@dataclass(frozen=True)
class DayRange:
    """UTC days overlapping the half-open instant range [start, end): `first` ≤ day < `stop`."""

    start: datetime
    end: datetime
    first: date
    stop: date


def day_range(raw_from: str | None, raw_to: str | None, now: datetime) -> DayRange:
    """`to` defaults to now, `from` to `MAX_RANGE_DAYS` before `to`; a wider span is 422."""
    end = parse_instant(raw_to, "to", end=True) or now
    try:
        start = parse_instant(raw_from, "from") or end - timedelta(days=MAX_RANGE_DAYS)
        if start >= end:
            raise Problem(422, "invalid-request", "from must be before to")
        if end - start > timedelta(days=MAX_RANGE_DAYS):
            raise Problem(422, "invalid-request", f"from..to spans more than {MAX_RANGE_DAYS} days")
        last = end.date() if end.timetz() != time(tzinfo=UTC) else end.date() - timedelta(days=1)
        return DayRange(start, end, start.date(), last + timedelta(days=1))
    except OverflowError:  # a range touching year 1 or year 9999
        raise Problem(422, "invalid-request", "from..to: out of range") from None


def fingerprint(filters: dict[str, Any]) -> str:
    """What a cursor remembers of the filters it was made under."""
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(key: Any, page: int, filters: dict[str, Any]) -> str:
    payload = json.dumps({"k": key, "p": page, "f": fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Cursor:
    key: Any  # the sort key of the last row already returned
    page: int  # the page number the cursor leads to


def decode_cursor(token: str, name: str, filters: dict[str, Any]) -> Cursor:
    """400 for a token that is not ours, or one made under other filters."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        key, page, made_under = payload["k"], payload["p"], payload["f"]
        if not isinstance(page, int) or not 1 <= page <= MAX_CURSOR_PAGE:
            raise ValueError(name)
        if not isinstance(made_under, str):
            raise ValueError(name)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "invalid-cursor", f"{name} is not a valid cursor") from None
    if made_under != fingerprint(filters):
        raise Problem(400, "invalid-cursor", f"{name} was made with other filters; drop it")
    return Cursor(key, page)
