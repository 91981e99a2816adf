"""Endpoint usage credits from ledger entries read back: the audit's fresh fold (the rebuild folds
in SQL, projections/rebuild_groups.py). The rule is the writer's own (services/core/usage.py),
and so is the upsert's arithmetic: add, never overwrite."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from schemas.ledger import LedgerEntryMessage
from services.core.usage import usage_credits
from services.platform.postgres import DbConnection

UsageKey = tuple[str, str, date]  # (account_id, endpoint, UTC day)
ADD_CREDITS = """
INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[]) ORDER BY 1, 2, 3
ON CONFLICT (account_id, endpoint, day) DO UPDATE SET
    credits = endpoint_usage.credits + EXCLUDED.credits
"""


def fold(credits: dict[UsageKey, int], entry: LedgerEntryMessage) -> None:
    fold_fields(
        credits, entry.account_id, entry.reason, entry.delta, entry.metadata, entry.occurred_at
    )


def fold_fields(
    credits: dict[UsageKey, int],
    account_id: str,
    reason: str,
    delta: int,
    metadata: Mapping[str, object],
    occurred_at: datetime,
) -> None:
    """`fold` of an entry given as its ledger row's fields (no message built)."""
    counted = usage_credits(reason, delta, metadata, occurred_at)
    if counted is not None:
        endpoint, day, added = counted
        key = (account_id, endpoint, day)
        credits[key] = credits.get(key, 0) + added


async def add(conn: DbConnection, credits: dict[UsageKey, int]) -> None:
    """Add the folded credits to `endpoint_usage`, in one statement."""
    if credits:
        keys = sorted(credits)
        await conn.execute(
            ADD_CREDITS, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [credits[k] for k in keys],
        )  # fmt: skip
