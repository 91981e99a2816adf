"""`Idempotency-Key` for admin writes: the first request claims the key, later ones replay.

The claim is an `INSERT … ON CONFLICT DO NOTHING` on (account_id, key), so of two concurrent
requests with one key exactly one publishes. The row keeps the request's fingerprint (SHA-256 of
method, path and canonical JSON body), the exact command bytes, and once Kafka acknowledged, the
answer: a replay with the same body gets that answer byte for byte, another body 409.

The command_id is derived from (account_id, key), and a claim whose request died (process
killed, Kafka timed out) is taken over by a retry that republishes the *stored* bytes: the
writer applies a command_id once, so even a publish that did land before the failure is not
applied twice. Validation failures (400/404/413/422) are not stored: nothing was done.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.api.problems import Problem

MAX_KEY_CHARS = 255
STALE_CLAIM_S = 60  # a claim unanswered this long belongs to a request that died
_NAMESPACE = uuid.UUID("6f3c2a52-2f4e-4d8e-9c59-0c3b6f1f7a10")

CLAIM = """
INSERT INTO api_idempotency_keys (account_id, idempotency_key, fingerprint, command_id, command)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (account_id, idempotency_key) DO NOTHING
RETURNING command_id
"""
FIND = """
SELECT fingerprint, command_id, command, response_status, response_body
FROM api_idempotency_keys WHERE account_id = $1 AND idempotency_key = $2
"""
TAKE_OVER = """
UPDATE api_idempotency_keys SET claimed_at = now()
WHERE account_id = $1 AND idempotency_key = $2 AND response_status IS NULL
  AND claimed_at < now() - make_interval(secs => $3)
RETURNING command_id, command
"""
COMPLETE = """
UPDATE api_idempotency_keys SET response_status = $3, response_body = $4, completed_at = now()
WHERE account_id = $1 AND idempotency_key = $2 AND response_status IS NULL
"""
ABANDON = """
UPDATE api_idempotency_keys SET claimed_at = '-infinity'
WHERE account_id = $1 AND idempotency_key = $2 AND response_status IS NULL
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request owns the key: publish `command` (the stored bytes), then `complete`."""

    command_id: str
    command: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_CHARS and key.isprintable()


def command_id_for(account_id: str, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{account_id}\n{key}"))


def fingerprint(method: str, path: str, body: Any) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{canonical}".encode()).digest()


async def claim(
    pool: asyncpg.Pool,
    account_id: str,
    key: str,
    request_fingerprint: bytes,
    command_id: str,
    command: bytes,
) -> Claimed | Replay:
    args = (account_id, key)
    if await pool.fetchval(CLAIM, *args, request_fingerprint, command_id, command) is not None:
        return Claimed(command_id, command)
    row = await pool.fetchrow(FIND, *args)
    if row is None:  # the claim was there a moment ago: keys are never deleted while in use
        raise Problem(409, "idempotency-key-in-use", "retry the request", {"Retry-After": "1"})
    if bytes(row["fingerprint"]) != request_fingerprint:
        raise Problem(
            409, "idempotency-key-reused",
            "this Idempotency-Key was used with another request (method, path or body)",
        )  # fmt: skip
    if row["response_status"] is not None:
        return Replay(row["response_status"], bytes(row["response_body"]))
    taken = await pool.fetchrow(TAKE_OVER, *args, float(STALE_CLAIM_S))
    if taken is not None:
        return Claimed(taken["command_id"], bytes(taken["command"]))
    raise Problem(
        409, "idempotency-key-in-use",
        "a request with this Idempotency-Key is in progress; retry it",
        {"Retry-After": "1"},
    )  # fmt: skip


async def complete(pool: asyncpg.Pool, account_id: str, key: str, status: int, body: bytes) -> None:
    await pool.execute(COMPLETE, account_id, key, status, body)


async def abandon(pool: asyncpg.Pool, account_id: str, key: str) -> None:
    """The publish failed: let the next retry take the claim over at once."""
    await pool.execute(ABANDON, account_id, key)
