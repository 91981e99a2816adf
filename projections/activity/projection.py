"""Day activity: fold the batch into per-day deltas, add them in one statement."""

from __future__ import annotations

from projections.activity.apply import DayActivity, DayKey, apply
from projections.checkpoints import Locked
from services.platform.postgres import DbConnection

NAME = "activity"
ADD_DAYS = """
INSERT INTO activity_days (account_id, day, scans, credits, refunds)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[])
ORDER BY 1, 2
ON CONFLICT (account_id, day) DO UPDATE SET
    scans = activity_days.scans + EXCLUDED.scans,
    credits = activity_days.credits + EXCLUDED.credits,
    refunds = activity_days.refunds + EXCLUDED.refunds
"""


async def apply_batch(conn: DbConnection, locked: Locked) -> None:
    days: dict[DayKey, DayActivity] = {}
    last_sources = dict(locked.sources)  # the checkpoint's, then each entry's as it is folded
    for entry in locked.fresh:
        last_sources[entry.account_id] = apply(days, last_sources[entry.account_id], entry)
    if days:
        keys = sorted(days)
        await conn.execute(
            ADD_DAYS, [a for a, _ in keys], [d for _, d in keys],
            [days[k].scans for k in keys], [days[k].credits for k in keys],
            [days[k].refunds for k in keys],
        )  # fmt: skip
