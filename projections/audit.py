"""`creditledger projections audit`: fold the ledger afresh, compare with every read model.

Streams the ledger account by account (keyset pages on the primary key, bounded memory), folds
each account with the projector's own pure apply functions (and endpoint usage credits with the
writer's rule, services/core/usage.py), and reports per account the first model and field that
differ. Balances and grants compare whole; activity and endpoint credits
compare every key either side holds (a missing row counts as zeros).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from projections.activity import apply as activity
from projections.balance import apply as balance
from projections.balance.store import read_view
from projections.grants import apply as grants
from projections.grants.projection import row_to_grant
from projections.ledger_rows import ledger_by_account
from projections.usage import credits as usage
from schemas.ledger import LedgerEntryMessage


@dataclass
class Drift:
    account_id: str
    model: str
    detail: str


@dataclass
class AuditReport:
    accounts: int = 0
    entries: int = 0
    drifts: list[Drift] = field(default_factory=list)


async def audit(pool: asyncpg.Pool) -> AuditReport:
    report = AuditReport()
    async for account_id, entries in ledger_by_account(pool):
        report.accounts += 1
        report.entries += len(entries)
        drift = await _audit_account(pool, account_id, entries)
        if drift is not None:
            report.drifts.append(drift)
    return report


async def _audit_account(
    pool: asyncpg.Pool, account_id: str, entries: list[LedgerEntryMessage]
) -> Drift | None:
    view = balance.BalanceView(account_id)
    days: dict[activity.DayKey, activity.DayActivity] = {}
    credits: dict[usage.UsageKey, int] = {}
    folded_grants: dict[grants.GrantKey, grants.GrantRow] = {}
    last_source: str | None = None
    for entry in entries:
        view = balance.apply(view, entry)
        last_source = activity.apply(days, last_source, entry)
        usage.fold(credits, entry)
        grants.apply(folded_grants, entry)
    stored_view = await read_view(pool, account_id)
    if stored_view is None or stored_view != view:
        return Drift(account_id, "balance", _diff(view, stored_view))
    stored_days = {
        (account_id, r["day"]): activity.DayActivity(r["scans"], r["credits"], r["refunds"])
        for r in await pool.fetch("SELECT * FROM activity_days WHERE account_id = $1", account_id)
    }
    if (detail := _compare(days, stored_days, activity.DayActivity())) is not None:
        return Drift(account_id, "activity", detail)
    stored_credits = {
        (account_id, r["endpoint"], r["day"]): r["credits"]
        for r in await pool.fetch(
            "SELECT endpoint, day, credits FROM endpoint_usage WHERE account_id = $1", account_id
        )
    }
    if (detail := _compare(credits, stored_credits, 0)) is not None:
        return Drift(account_id, "usage", detail)
    stored_grants = {
        (account_id, r["grant_id"]): row_to_grant(r)
        for r in await pool.fetch("SELECT * FROM grants_view WHERE account_id = $1", account_id)
    }
    if (detail := _compare(folded_grants, stored_grants, None)) is not None:
        return Drift(account_id, "grants", detail)
    return None


def _compare(folded: dict[Any, Any], stored: dict[Any, Any], empty: object) -> str | None:
    for key in sorted(set(folded) | set(stored), key=str):
        want, have = folded.get(key, empty), stored.get(key, empty)
        if want != have:
            return f"{key}: ledger gives {want}, model holds {have}"
    return None


def _diff(want: balance.BalanceView, have: balance.BalanceView | None) -> str:
    if have is None:
        return f"no balance row; ledger gives balance {want.balance} at seq {want.last_seq}"
    for name in ("last_seq", "balance", "reserved", "granted_total", "consumed_total", "grants"):
        if getattr(want, name) != getattr(have, name):
            return f"{name}: ledger gives {getattr(want, name)}, model holds {getattr(have, name)}"
    return "last_updated differs"
