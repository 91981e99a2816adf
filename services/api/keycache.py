"""Verified customer keys, remembered for at most `api_key_cache_ttl_s` (1 s by default).

An entry is made only from the `api_keys` row of a key that was valid when read (never for an
unknown, revoked or expired one), keyed by the secret's SHA-256, and holds what the row said:
account, key id and `expires_at` (checked against the clock on every use, so a rotated key's
overlap ends on time). After the TTL the key is looked up again, so a key revoked by any
process is refused within the TTL; this process's own revoke and rotate forget every entry at
once (`forget_all`). The cache is an LRU of bounded size: a flood of distinct valid keys evicts
the oldest, which only costs a lookup. Per process, like the rate limits.

`KnownAccounts`: the accounts a service token was found to name (auth.py). An account never
stops existing, so only a found one is remembered, without a TTL, in a bounded LRU.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from services.platform.settings import Settings


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    account_id: str
    key_id: str
    expires_at: datetime | None


class KeyCache:
    def __init__(self, ttl_s: float, max_keys: int) -> None:
        self.ttl_s, self.max_keys = ttl_s, max_keys
        self._entries: OrderedDict[str, tuple[float, VerifiedKey]] = OrderedDict()

    def get(self, digest: str, now: float | None = None) -> VerifiedKey | None:
        found = self._entries.get(digest)
        if found is None:
            return None
        if (time.monotonic() if now is None else now) >= found[0]:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return found[1]

    def put(self, digest: str, key: VerifiedKey, now: float | None = None) -> None:
        if self.ttl_s <= 0:
            return
        expires = (time.monotonic() if now is None else now) + self.ttl_s
        self._entries[digest] = (expires, key)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def forget_all(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def key_cache(connection: HTTPConnection) -> KeyCache:
    """The app's cache, made on first use from its settings."""
    return app_key_cache(connection.app)


def app_key_cache(app: FastAPI) -> KeyCache:
    state = app.state
    found: KeyCache | None = getattr(state, "key_cache", None)
    if found is None:
        settings: Settings = state.settings
        found = KeyCache(settings.api_key_cache_ttl_s, settings.api_key_cache_max_keys)
        state.key_cache = found
    return found


class KnownAccounts:
    def __init__(self, max_accounts: int) -> None:
        self.max_accounts = max_accounts
        self._ids: OrderedDict[str, None] = OrderedDict()

    def has(self, account_id: str) -> bool:
        if account_id not in self._ids:
            return False
        self._ids.move_to_end(account_id)
        return True

    def add(self, account_id: str) -> None:
        self._ids[account_id] = None
        self._ids.move_to_end(account_id)
        while len(self._ids) > self.max_accounts:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


def known_accounts(connection: HTTPConnection) -> KnownAccounts:
    """The app's known accounts, made on first use (as large as the key cache may be)."""
    state = connection.app.state
    found: KnownAccounts | None = getattr(state, "known_accounts", None)
    if found is None:
        settings: Settings = state.settings
        found = KnownAccounts(settings.api_key_cache_max_keys)
        state.known_accounts = found
    return found
