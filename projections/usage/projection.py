"""Endpoint usage credits: fold the batch into per-(endpoint, day) deltas, add in one statement."""

from __future__ import annotations

from projections.checkpoints import Locked
from projections.usage.apply import UsageKey, apply
from services.platform.postgres import DbConnection

NAME = "usage"
ADD_CREDITS = """
INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[]) ORDER BY 1, 2, 3
ON CONFLICT (account_id, endpoint, day) DO UPDATE SET
    credits = endpoint_usage.credits + EXCLUDED.credits
"""


async def apply_batch(conn: DbConnection, locked: Locked) -> None:
    credits: dict[UsageKey, int] = {}
    for entry in locked.fresh:
        apply(credits, entry)
    if credits:
        keys = sorted(credits)
        await conn.execute(
            ADD_CREDITS, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
            [credits[k] for k in keys],
        )  # fmt: skip
