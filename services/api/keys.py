"""API key secrets: `cl_live_<30 random chars><6-char checksum>`.

The checksum (CRC-32 of the random part) lets a malformed or mistyped key be refused before any
database lookup; only the SHA-256 of a secret is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib

_ALPHABET = string.ascii_letters + string.digits
_BODY_CHARS = 30
_CHECKSUM_CHARS = 6
PREFIXES = ("cl_live_", "cl_test_")
# The random part and the checksum: `_ALPHABET` only (one regex, not a test per character).
_REST = re.compile(f"[A-Za-z0-9]{{{_BODY_CHARS + _CHECKSUM_CHARS}}}")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_secret(prefix: str = "cl_live_") -> str:
    assert prefix in PREFIXES
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_CHARS))
    return prefix + body + _base62(zlib.crc32(body.encode()), _CHECKSUM_CHARS)


def is_well_formed(secret: str) -> bool:
    prefix = secret[:8]
    rest = secret[8:]
    if prefix not in PREFIXES or not _REST.fullmatch(rest):
        return False
    body, checksum = rest[:_BODY_CHARS], rest[_BODY_CHARS:]
    return secrets.compare_digest(checksum, _base62(zlib.crc32(body.encode()), _CHECKSUM_CHARS))


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)
