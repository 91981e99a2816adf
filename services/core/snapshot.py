"""The account snapshot as JSON (`writer_accounts.snapshot`, which the writer keeps and the read API
folds from), and back: pure, so both read it without the read path importing the writer.

The snapshot holds the whole account state except refund lineage, which lives in the ledger and
is loaded per batch for the requests a batch refunds or captures.

Its hot part (the totals and each bucket's `remaining`: what a usage event changes) is also kept
in narrow columns beside it (migration 0021): the writer writes those alone when the rest, the
cold part, is unchanged (`same_cold_part`), else the whole JSON, so a reader takes the columns
over the snapshot's copies when they are set (`state_from_json`'s `granted_total`, `consumed_total`,
`remaining`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from services.core.model import (
    DEFAULT_GRANT_EXPIRING_NOTICE_S,
    AccountSettings,
    AccountState,
    AlertFlags,
    AutoReload,
    Bucket,
    BucketKind,
    Consumption,
    Hold,
)


def state_to_json(state: AccountState) -> dict[str, Any]:
    return _state_doc(state, _isoformat)


def state_to_doc(state: AccountState) -> dict[str, Any]:
    """`state_to_json` with each instant and day left as the `datetime` or `date` whose
    `isoformat()` the JSON holds: for an encoder that writes them as that text itself (the
    writer's orjson; tests/unit/test_core_snapshot_doc.py holds the two equal)."""
    return _state_doc(state, _same)


def _isoformat(value: datetime | date) -> str:
    return value.isoformat()


def _same(value: datetime | date) -> datetime | date:
    return value


def _state_doc(state: AccountState, iso: Callable[[Any], Any]) -> dict[str, Any]:
    settings, flags = state.settings, state.flags
    reload = settings.auto_reload
    return {
        # An object keyed by grant id, not a list: asyncpg reads a list inside a jsonb[]
        # parameter as another array dimension.
        "buckets": {b.grant_id: _bucket_json(b, iso) for b in state.buckets},
        "holds": {h.hold_id: [h.amount, iso(h.expires_at)] for h in state.holds},
        "settings": {
            "low_balance_threshold": settings.low_balance_threshold,
            "auto_reload": [reload.threshold, reload.amount, reload.max_per_day]
            if reload
            else None,
            "credit_limit": settings.credit_limit,
            "grant_expiring_notice_s": settings.grant_expiring_notice_s,
        },
        "flags": {
            "low_balance": flags.low_balance,
            "depleted": flags.depleted,
            "auto_reload": flags.auto_reload,
            "auto_reload_day": iso(flags.auto_reload_day) if flags.auto_reload_day else None,
            "auto_reloads_that_day": flags.auto_reloads_that_day,
            "overage": flags.overage,
            "over_limit": flags.over_limit,
        },
        "totals": [state.granted_total, state.consumed_total],
    }


def state_from_json(
    account_id: str,
    seq: int,
    balance: int,
    snapshot: dict[str, Any],
    consumptions: dict[str, Consumption],
    granted_total: int | None = None,
    consumed_total: int | None = None,
    remaining: Mapping[str, int] | None = None,
) -> AccountState:
    """The state from its row: the hot columns, where not None (NULL: a row no writer saved since
    migration 0021), override the snapshot's totals and remainders (a bucket they do not name
    keeps the snapshot's)."""
    settings = snapshot.get("settings") or {}
    flags = snapshot.get("flags") or {}
    reload = settings.get("auto_reload")
    totals = snapshot.get("totals") or (0, 0)  # migration 0006 wrote them for older rows
    buckets = (snapshot.get("buckets") or {}).values()
    return AccountState(
        account_id=account_id,
        seq=seq,
        balance=balance,
        buckets=tuple(_bucket_from_json(b) for b in buckets)
        if remaining is None
        else tuple(_bucket_from_json(b, remaining) for b in buckets),
        holds=tuple(
            Hold(hold_id, amount, datetime.fromisoformat(expires_at))
            for hold_id, (amount, expires_at) in (snapshot.get("holds") or {}).items()
        ),
        settings=_settings(
            settings.get("low_balance_threshold"),
            tuple(reload) if reload else None,
            settings.get("credit_limit", 0),
            settings.get("grant_expiring_notice_s", DEFAULT_GRANT_EXPIRING_NOTICE_S),
        ),
        flags=_flags(
            flags.get("low_balance", False),
            flags.get("depleted", False),
            flags.get("auto_reload", False),
            flags.get("auto_reload_day"),
            flags.get("auto_reloads_that_day", 0),
            flags.get("overage", False),
            flags.get("over_limit", False),
        ),
        consumptions=consumptions,
        granted_total=totals[0] if granted_total is None else granted_total,
        consumed_total=totals[1] if consumed_total is None else consumed_total,
    )


def bucket_remaining(state: AccountState) -> dict[str, int]:
    """The `bucket_remaining` column: each bucket's remaining credit by grant id."""
    return {b.grant_id: b.remaining for b in state.buckets}


def same_cold_part(loaded: AccountState, saved: AccountState) -> bool:
    """Whether `saved` differs from `loaded` at most in its hot part (seq, balance, the totals,
    the buckets' `remaining`; lineage is never in the snapshot): then the snapshot that holds
    `loaded` holds `saved` too, once its hot columns are applied, and need not be written again.
    Identity first: a usage event keeps the holds, settings, flags and undrawn buckets as they
    were (tests/unit/test_core_cold_part.py holds this against the encoding)."""
    if loaded is saved:
        return True
    return (
        _unchanged(loaded.holds, saved.holds)
        and _unchanged(loaded.settings, saved.settings)
        and _unchanged(loaded.flags, saved.flags)
        and _same_buckets_but_remaining(loaded.buckets, saved.buckets)
    )


def _unchanged(old: object, new: object) -> bool:
    return old is new or old == new


def _same_buckets_but_remaining(old: tuple[Bucket, ...], new: tuple[Bucket, ...]) -> bool:
    if old is new:
        return True
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if a is not b and not _same_but_remaining(a, b):
            return False
    return True


def _same_but_remaining(old: Bucket, new: Bucket) -> bool:
    return (
        old.grant_id == new.grant_id and old.kind == new.kind and old.priority == new.priority
        and old.effective_at == new.effective_at and old.expires_at == new.expires_at
        and old.granted_seq == new.granted_seq and old.applies_to == new.applies_to
        and old.granted == new.granted and old.pending == new.pending
        and old.source == new.source and old.expiry_noticed == new.expiry_noticed
    )  # fmt: skip


# Settings and flags are immutable and nearly every account has one of a few: one instance per
# distinct value, rather than one built per account each time its snapshot is read (typed, so
# that 1 and True stay apart).
@lru_cache(maxsize=4096, typed=True)
def _settings(
    low_balance_threshold: int | None,
    auto_reload: tuple[int, int, int] | None,
    credit_limit: int,
    grant_expiring_notice_s: int,
) -> AccountSettings:
    return AccountSettings(
        low_balance_threshold=low_balance_threshold,
        auto_reload=AutoReload(*auto_reload) if auto_reload else None,
        credit_limit=credit_limit,
        grant_expiring_notice_s=grant_expiring_notice_s,
    )


@lru_cache(maxsize=4096, typed=True)
def _flags(
    low_balance: bool,
    depleted: bool,
    auto_reload: bool,
    auto_reload_day: str | None,
    auto_reloads_that_day: int,
    overage: bool,
    over_limit: bool,
) -> AlertFlags:
    return AlertFlags(
        low_balance=low_balance,
        depleted=depleted,
        auto_reload=auto_reload,
        auto_reload_day=date.fromisoformat(auto_reload_day) if auto_reload_day else None,
        auto_reloads_that_day=auto_reloads_that_day,
        overage=overage,
        over_limit=over_limit,
    )


def _bucket_json(b: Bucket, iso: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "grant_id": b.grant_id, "kind": b.kind.value, "priority": b.priority,
        "effective_at": iso(b.effective_at),
        "expires_at": iso(b.expires_at) if b.expires_at else None,
        "granted_seq": b.granted_seq, "remaining": b.remaining,
        "applies_to": list(b.applies_to) if b.applies_to is not None else None,
        "granted": b.granted, "pending": b.pending, "source": b.source,
        "noticed": b.expiry_noticed,
    }  # fmt: skip


def _bucket_from_json(d: dict[str, Any], hot: Mapping[str, int] | None = None) -> Bucket:
    # `granted` defaults to the snapshot's own remaining (a snapshot from before it was kept),
    # never to the column's: the same value however often the column changed since.
    remaining = d["remaining"] if hot is None else hot.get(d["grant_id"], d["remaining"])
    return Bucket(
        grant_id=d["grant_id"], kind=BucketKind(d["kind"]), priority=d["priority"],
        effective_at=datetime.fromisoformat(d["effective_at"]),
        expires_at=datetime.fromisoformat(d["expires_at"]) if d["expires_at"] else None,
        granted_seq=d["granted_seq"], remaining=remaining,
        applies_to=tuple(d["applies_to"]) if d["applies_to"] is not None else None,
        granted=d.get("granted", d["remaining"]), pending=d.get("pending", 0),
        source=d.get("source", ""), expiry_noticed=d.get("noticed", False),
    )  # fmt: skip
