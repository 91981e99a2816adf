"""The request id: one per HTTP request, in the access log, the log context and the Kafka
headers of the commands the request publishes.

Taken from the caller's `X-Request-Id` when it is short and plain (1-128 of letters, digits
and `._:-`: it is logged and sent on to Kafka as is), else generated (32 hex digits); never a
reason to refuse a request. A generated id is 16 random bytes as hex, as `uuid4().hex` but
without its UUID object: the bytes are drawn from the OS 4 KiB at a time (~0.3 us an id instead
of ~2). `MetricsMiddleware` (services/api/metrics.py) sets it on every
request and answers it as `X-Request-Id`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from starlette.requests import Request

REQUEST_ID_HEADER = "X-Request-Id"
KAFKA_REQUEST_ID_HEADER = "request_id"  # on the commands the API publishes (routes_admin)
# A caller's id is kept when it is short and plain (it is logged and sent on to Kafka);
# anything else is replaced by a fresh one, never refused.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The incoming `X-Request-Id` when it is valid, else a new one (32 hex digits)."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return _random_ids.new()


class _RandomIds:
    """Ids of 16 bytes from `os.urandom`, drawn 256 at a time; a forked child draws its own."""

    BATCH = 256

    def __init__(self) -> None:
        self._bytes = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._bytes, self._at = b"", 0

    def new(self) -> str:
        at = self._at
        if at >= len(self._bytes):
            self._bytes, at = os.urandom(16 * self.BATCH), 0
        self._at = at + 16
        return self._bytes[at : at + 16].hex()


_random_ids = _RandomIds()


def request_id(request: Request) -> str:
    """The id of the request being answered (set by `MetricsMiddleware`)."""
    found = request.scope.get("state", {}).get("request_id")
    return found if isinstance(found, str) else request_id_from(request.scope["headers"])


def kafka_headers(request: Request) -> list[tuple[str, bytes]]:
    """Headers of a record published for `request`: its id travels to the writer's log."""
    return [(KAFKA_REQUEST_ID_HEADER, request_id(request).encode())]
