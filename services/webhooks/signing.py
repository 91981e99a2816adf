"""The `Creditledger-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>` of
`"<t>.<raw body>"` under the endpoint's secret (docs/webhooks.md shows receivers)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Creditledger-Signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    signed = str(timestamp_s).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp_s: int, body: bytes) -> str:
    return f"t={timestamp_s},v1={signature(secret, timestamp_s, body)}"


def verify(
    secret: str, header: str, body: bytes, now_s: int, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """What a receiver checks: a `v1` signature that matches, on a timestamp within
    `tolerance_s` of its clock (an old request replayed is refused)."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [value for name, value in parts if name == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    timestamp_s = int(timestamps[0])
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    expected = signature(secret, timestamp_s, body)
    return any(name == "v1" and hmac.compare_digest(value, expected) for name, value in parts)
