"""evolve(state, entry) -> state: the only way account state changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from services.core.model import AccountState, Bucket, EntryReason, LedgerEntry


def evolve(state: AccountState, entry: LedgerEntry) -> AccountState:
    assert entry.account_id == state.account_id, "entry applied to another account"
    assert entry.seq == state.seq + 1, f"seq gap: state at {state.seq}, entry {entry.seq}"
    assert entry.balance_after == state.balance + entry.delta, "balance_after disagrees"
    buckets = _evolve_buckets(state.buckets, entry)
    return AccountState(
        account_id=state.account_id,
        seq=entry.seq,
        balance=entry.balance_after,
        buckets=buckets,
    )


def evolve_all(state: AccountState, entries: Iterable[LedgerEntry]) -> AccountState:
    for entry in entries:
        state = evolve(state, entry)
    return state


def _evolve_buckets(buckets: tuple[Bucket, ...], entry: LedgerEntry) -> tuple[Bucket, ...]:
    if entry.reason is EntryReason.GRANT:
        assert entry.grant is not None, "grant entry without its bucket"
        return (*buckets, entry.grant)
    if entry.bucket_grant_id is None:
        return buckets
    changed: list[Bucket] = []
    found = False
    for bucket in buckets:
        if bucket.grant_id == entry.bucket_grant_id:
            found = True
            remaining = bucket.remaining + entry.delta
            assert remaining >= 0, f"bucket {bucket.grant_id} would go below zero"
            bucket = replace(bucket, remaining=remaining)
        changed.append(bucket)
    assert found, f"entry names unknown bucket {entry.bucket_grant_id}"
    return tuple(changed)
