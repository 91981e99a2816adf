"""The key cache: at most its TTL, bounded (LRU), never a key that was not valid."""

from __future__ import annotations

from services.api.keycache import KeyCache, VerifiedKey

KEY = VerifiedKey("acct", "key_1", None)


def test_a_key_is_remembered_for_the_ttl_and_not_a_moment_longer() -> None:
    cache = KeyCache(ttl_s=1.0, max_keys=10)
    cache.put("h", KEY, now=100.0)
    assert cache.get("h", now=100.0) == KEY
    assert cache.get("h", now=100.999) == KEY
    assert cache.get("h", now=101.0) is None
    assert len(cache) == 0  # an expired entry is dropped when met
    assert cache.get("h", now=100.5) is None  # and stays gone


def test_a_use_does_not_extend_the_ttl() -> None:
    cache = KeyCache(ttl_s=1.0, max_keys=10)
    cache.put("h", KEY, now=0.0)
    for moment in (0.3, 0.6, 0.9):
        assert cache.get("h", now=moment) == KEY
    assert cache.get("h", now=1.0) is None


def test_the_least_recently_used_key_is_evicted_first() -> None:
    cache = KeyCache(ttl_s=1.0, max_keys=2)
    cache.put("a", KEY, now=0.0)
    cache.put("b", KEY, now=0.0)
    assert cache.get("a", now=0.1) == KEY  # a is now the most recent
    cache.put("c", KEY, now=0.2)
    assert len(cache) == 2
    assert cache.get("b", now=0.3) is None
    assert cache.get("a", now=0.3) == KEY and cache.get("c", now=0.3) == KEY


def test_a_ttl_of_zero_remembers_nothing_and_forget_all_forgets() -> None:
    off = KeyCache(ttl_s=0.0, max_keys=10)
    off.put("h", KEY)
    assert off.get("h") is None and len(off) == 0
    cache = KeyCache(ttl_s=1.0, max_keys=10)
    cache.put("h", KEY)
    cache.forget_all()
    assert cache.get("h") is None
