"""Which endpoint and UTC day a ledger entry's credits count for in endpoint usage (pure).

A consume adds its credits (-delta) to its endpoint and the day it occurred; a refund takes them
back from the call's own endpoint and day (both carried by the refund entry: `endpoint`,
`consumed_at`), so the figures are net of refunds. The writer applies it to the entries it
writes; the rebuild's tail and the audit apply it to entries read back from the ledger; the
rebuild's set-based SQL (projections/rebuild_groups.py) states the same rule as aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

UsageCredits = tuple[str, date, int]  # (endpoint, UTC day, credits added there)


def usage_credits(
    reason: str, delta: int, metadata: Mapping[str, object], occurred_at: datetime
) -> UsageCredits | None:
    """Where the entry's credits count (endpoint, UTC day) and how many (-delta: a consume's
    delta is negative, a refund's positive), or None when they count nowhere (not a consume or
    refund, or no endpoint named)."""
    if reason != "consume" and reason != "refund":
        return None
    endpoint = metadata.get("endpoint")
    if not isinstance(endpoint, str):
        return None
    when = occurred_at
    consumed_at = metadata.get("consumed_at")
    if reason == "refund" and isinstance(consumed_at, str):
        when = datetime.fromisoformat(consumed_at)
        if when.tzinfo is None:  # as the rebuild's SQL reads it: UTC, never the host's zone
            when = when.replace(tzinfo=UTC)
    return endpoint, when.astimezone(UTC).date(), -delta
