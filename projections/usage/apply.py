"""Endpoint usage credits from ledger entries (pure); the traffic columns come from the writer.

A consume adds its credits to its endpoint and day; a refund takes them back from the call's own
endpoint and day (both carried by the refund entry), so the figures are net of refunds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from schemas.ledger import LedgerEntryMessage

UsageKey = tuple[str, str, date]  # (account_id, endpoint, UTC day)


def apply(credits: dict[UsageKey, int], entry: LedgerEntryMessage) -> None:
    endpoint = entry.metadata.get("endpoint")
    if entry.reason not in ("consume", "refund") or not isinstance(endpoint, str):
        return
    when = entry.occurred_at
    consumed_at = entry.metadata.get("consumed_at")
    if entry.reason == "refund" and isinstance(consumed_at, str):
        when = datetime.fromisoformat(consumed_at)
    key = (entry.account_id, endpoint, when.astimezone(UTC).date())
    credits[key] = credits.get(key, 0) - entry.delta
