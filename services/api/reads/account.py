"""Reads for the dashboard's account panels: settings, a daily balance, and recent alerts.

Settings come from the writer's account state (`writer_accounts`, as balance and check read it:
reads/balance.py). The daily balance and the alerts come from the ledger, read as the customer
under row-level security (`freshness.fresh_read`).

Alerts: the writer publishes them to `credits.alerts.v1` and nothing stores them in Postgres
(the outbox row is deleted once relayed). Rather than a new consumer and table for one panel,
`recent_alerts` re-derives them from the ledger with the core's crossing rules
(services/core/alerts.py): once per crossing below the low-balance or auto-reload threshold
(re-armed when `available` comes back to it), at zero (`depleted`), into debt (`overage`), and
one per `expiry` entry that took credit (`grant_expired`; the core also closes a fully spent
grant with a 0-credit expiry entry, and raises no alert for it: services/core/expiry.py).
Limits, said in the answer (`basis`): thresholds are the account's current ones (a threshold
changed within the window is applied to all of it), and `credit_limit_exceeded` is not derived.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from services.core.model import AccountSettings, AutoReload

# $1 account, $2 the window's first instant, $3 its end: entries before $2 fold into the
# opening balance (day NULL), the rest are summed per UTC day of their event time.
DAILY_CHANGES = """
SELECT CASE WHEN e.occurred_at < $2 THEN NULL
            ELSE (e.occurred_at AT TIME ZONE 'UTC')::date END AS day,
       sum(e.delta)::bigint AS change
FROM ledger_entries e
WHERE e.account_id = $1 AND e.occurred_at < $3
GROUP BY 1
"""
# The entries from the first one whose event time is in the window, in ledger order, and the
# running balance and reserve just before it.
WINDOW_ENTRIES = """
SELECT e.seq, e.delta, e.balance_after, e.reserved_delta, e.reason, e.bucket_grant_id,
       e.bucket_kind, e.occurred_at
FROM ledger_entries e
WHERE e.account_id = $1
  AND e.seq >= (SELECT coalesce(min(f.seq), 0) FROM ledger_entries f
                WHERE f.account_id = $1 AND f.occurred_at >= $2)
  AND EXISTS (SELECT 1 FROM ledger_entries g WHERE g.account_id = $1 AND g.occurred_at >= $2)
ORDER BY e.seq
LIMIT $3
"""
OPENING = """
SELECT coalesce((SELECT balance_after FROM ledger_entries WHERE account_id = $1 AND seq = $2 - 1),
                0)::bigint AS balance,
       coalesce((SELECT sum(reserved_delta) FROM ledger_entries
                 WHERE account_id = $1 AND seq < $2), 0)::bigint AS reserved
"""
MAX_WINDOW_ENTRIES = 50_000  # a busier window derives its alerts from its first entries only
ALERTS_BASIS = (
    "derived from the ledger with the account's current thresholds (alerts themselves are "
    "published to credits.alerts.v1); credit_limit_exceeded is not derived"
)


def settings_json(account_id: str, settings: AccountSettings, seq: int) -> dict[str, Any]:
    reload = settings.auto_reload
    return {
        "accountId": account_id,
        "lowBalanceThreshold": settings.low_balance_threshold,
        "autoReload": _reload_json(reload),
        "creditLimit": settings.credit_limit,
        "grantExpiringNoticeS": settings.grant_expiring_notice_s,
        "ledgerSeq": seq,
    }


def _reload_json(reload: AutoReload | None) -> dict[str, int] | None:
    if reload is None:
        return None
    return {"threshold": reload.threshold, "amount": reload.amount, "maxPerDay": reload.max_per_day}


def daily_balances(rows: Sequence[Mapping[str, Any]], first: date, days: int) -> list[Any]:
    """End-of-day balances by event time for `days` UTC days from `first`."""
    balance = sum(r["change"] for r in rows if r["day"] is None)
    changes = {r["day"]: r["change"] for r in rows if r["day"] is not None}
    out = []
    for n in range(days):
        day = first + timedelta(days=n)
        change = changes.get(day, 0)
        balance += change
        out.append({"day": day.isoformat(), "balance": balance, "change": change})
    return out


@dataclass
class _Armed:
    """Which crossings have fired since `available` last came back above their line."""

    low: bool = False
    depleted: bool = False
    reload: bool = False
    owed: bool = False
    reloads_on: dict[date, int] = field(default_factory=dict)


def recent_alerts(
    settings: AccountSettings,
    opening: asyncpg.Record | None,
    entries: list[asyncpg.Record],
    has_history: bool,
) -> list[dict[str, Any]]:
    """The alerts the window's entries crossed into, oldest first."""
    balance, reserved = (opening["balance"], opening["reserved"]) if opening else (0, 0)
    fired = _Armed()
    if has_history:  # crossings already made before the window do not fire again
        _rearm(fired, settings, balance, balance - reserved, initial=True)
    alerts: list[dict[str, Any]] = []
    for entry in entries:
        balance = entry["balance_after"]
        reserved += entry["reserved_delta"]
        if entry["reason"] == "expiry" and entry["delta"] < 0:  # as the core raises it
            alerts.append(_alert("grant_expired", entry, {"grantId": entry["bucket_grant_id"]}))
        alerts.extend(_crossings(fired, settings, entry, balance, balance - reserved))
    return alerts


def _crossings(
    fired: _Armed, settings: AccountSettings, entry: asyncpg.Record, balance: int, available: int
) -> list[dict[str, Any]]:
    out = []
    low = settings.low_balance_threshold
    if low is not None and available < low and not fired.low:
        fired.low = True
        out.append(_alert("low_balance", entry, {"threshold": low, "available": available}))
    if available <= 0 and not fired.depleted:
        fired.depleted = True
        out.append(_alert("depleted", entry, {"available": available}))
    if balance < 0 and not fired.owed:
        fired.owed = True
        out.append(_alert("overage", entry, {"overage": -balance}))
    reload = settings.auto_reload
    if reload is not None and available < reload.threshold and not fired.reload:
        day = entry["occurred_at"].date()
        if fired.reloads_on.get(day, 0) < reload.max_per_day:
            fired.reload = True
            fired.reloads_on[day] = fired.reloads_on.get(day, 0) + 1
            details = {"amount": reload.amount, "threshold": reload.threshold}
            out.append(_alert("auto_reload_requested", entry, details))
    _rearm(fired, settings, balance, available)
    return out


def _rearm(
    fired: _Armed, settings: AccountSettings, balance: int, available: int, initial: bool = False
) -> None:
    """Back above a line: its alert may fire again. `initial`: set what is crossed already."""
    low = settings.low_balance_threshold
    reload = settings.auto_reload
    if initial:
        fired.low = low is not None and available < low
        fired.depleted = available <= 0
        fired.owed = balance < 0
        fired.reload = reload is not None and available < reload.threshold
        return
    if low is None or available >= low:
        fired.low = False
    if available > 0:
        fired.depleted = False
    if balance >= 0:
        fired.owed = False
    if reload is None or available >= reload.threshold:
        fired.reload = False


def _alert(kind: str, entry: asyncpg.Record, data: dict[str, Any]) -> dict[str, Any]:
    at: datetime = entry["occurred_at"]
    return {"type": kind, "at": at, "seq": entry["seq"], "data": data}
