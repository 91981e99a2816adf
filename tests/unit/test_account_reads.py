"""The dashboard's account reads (services/api/reads/account.py): the alerts derived from the
ledger are those the core raises, and the settings read answers every account setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg

from services.api.reads.account import recent_alerts, settings_json
from services.api.routes_account_settings import AccountSettingsRead
from services.core.decide import decide_and_evolve
from services.core.model import (
    DEFAULT_GRANT_EXPIRING_NOTICE_S,
    AccountSettings,
    AccountState,
    AlertRaised,
    BucketKind,
    ChangeSettings,
    Command,
    ConsumeUsage,
    GrantCredits,
    LedgerEntry,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(entry: LedgerEntry) -> dict[str, Any]:
    """The entry as WINDOW_ENTRIES selects it."""
    return {
        "seq": entry.seq, "delta": entry.delta, "balance_after": entry.balance_after,
        "reserved_delta": entry.reserved_delta, "reason": entry.reason.value,
        "bucket_grant_id": entry.bucket_grant_id,
        "bucket_kind": entry.bucket_kind.value if entry.bucket_kind else None,
        "occurred_at": entry.occurred_at,
    }  # fmt: skip


def test_grant_expired_is_derived_only_for_an_expiry_that_took_credit() -> None:
    """Two grants expire: one spent in full (the core writes a 0-credit expiry entry and no
    alert), one with 5 left (an entry of -5 and an alert). The derived alerts are the core's."""
    expires = T0 + timedelta(days=1)
    commands: list[Command] = [
        GrantCredits("a", "spent", 10, BucketKind.PURCHASED, 20, "", T0, expires, T0),
        GrantCredits("a", "left", 5, BucketKind.GIFT, 30, "", T0, expires, T0),
        ConsumeUsage("a", "r1", "POST /v1/scan", 200, 10, T0 + timedelta(hours=1)),
        ConsumeUsage("a", "r2", "POST /v1/scan", 200, 0, expires + timedelta(hours=1)),
    ]
    state, entries, raised = AccountState("a"), [], []
    for command in commands:
        events, state = decide_and_evolve(state, command, T0)
        entries += [e for e in events if isinstance(e, LedgerEntry)]
        raised += [e for e in events if isinstance(e, AlertRaised)]
    expiries = [e for e in entries if e.reason.value == "expiry"]
    assert sorted(e.delta for e in expiries) == [-5, 0]
    records = cast(list[asyncpg.Record], [row(e) for e in entries])
    derived = recent_alerts(AccountSettings(), None, records, has_history=False)
    expired = [a for a in derived if a["type"] == "grant_expired"]
    assert [a["data"] for a in expired] == [{"grantId": "left"}]
    core_expired = [a for a in raised if a.kind.value == "grant_expired"]
    assert [a.details["grant_id"] for a in core_expired] == ["left"]


def test_settings_read_answers_the_grant_expiring_notice() -> None:
    default = settings_json("a", AccountSettings(), 3)
    assert default["grantExpiringNoticeS"] == DEFAULT_GRANT_EXPIRING_NOTICE_S == 3 * 86_400
    read = AccountSettingsRead.model_validate(default)
    assert read.model_dump(by_alias=True)["grantExpiringNoticeS"] == 3 * 86_400
    state = AccountState("a")
    command = ChangeSettings("a", "s1", T0, grant_expiring_notice_s=3600)
    _, state = decide_and_evolve(state, command, T0)
    assert settings_json("a", state.settings, state.seq)["grantExpiringNoticeS"] == 3600
