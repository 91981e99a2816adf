"""`ProblemError`: an answer the API refused, carrying its application/problem+json fields."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PROBLEM_FIELDS = ("type", "title", "status", "detail")


class ProblemError(Exception):
    """A non-success answer. `type` is the problem's stable URI, `slug` its last segment
    (`insufficient-credits`, `not-found`, …); `extra` holds the members beyond RFC 9457's
    (402's `available`, 422's `errors`, …); `headers` the answer's headers."""

    def __init__(
        self,
        *,
        type: str,
        title: str,
        status: int,
        detail: str,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.type, self.title, self.status, self.detail = type, title, status, detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def slug(self) -> str:
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @property
    def retry_after_s(self) -> float | None:
        return retry_after_s(self.headers.get("retry-after"))

    @classmethod
    def from_answer(cls, status: int, headers: Mapping[str, str], body: bytes) -> ProblemError:
        """The problem an answer describes; an answer that is not problem+json (a proxy's HTML
        page) still gives a ProblemError, with its text as the detail."""
        parsed: Any = None
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        lowered = {k.lower(): v for k, v in headers.items()}
        if not isinstance(parsed, dict):
            text = body.decode("utf-8", "replace").strip()[:500]
            return cls(
                type="about:blank", title=f"HTTP {status}", status=status,
                detail=text or f"the API answered {status}", headers=lowered,
            )  # fmt: skip
        extra = {k: v for k, v in parsed.items() if k not in PROBLEM_FIELDS}
        return cls(
            type=str(parsed.get("type") or "about:blank"),
            title=str(parsed.get("title") or f"HTTP {status}"),
            status=parsed["status"] if isinstance(parsed.get("status"), int) else status,
            detail=str(parsed.get("detail") or ""),
            extra=extra,
            headers=lowered,
        )


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds (the API sends whole seconds; an HTTP date is not used)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
