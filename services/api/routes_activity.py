"""Customer reads: billable calls per UTC day (`GET /v1/credits/activity`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from services.api.models import TYPED
from services.api.models.reads import Activity
from services.api.read_params import (
    CustomerDep,
    FromParam,
    ToParam,
    read_responses,
)
from services.api.reads import activity
from services.api.reads.common import (
    day_range,
    iso,
)
from services.api.reads.freshness import (
    ACTIVITY,
    MinSeq,
    fresh_read,
)

router = APIRouter(tags=["credits"])


@router.get(
    "/v1/credits/activity",
    response_model=Activity,
    operation_id="getActivity",
    summary="Billable calls and credits per UTC day, net of refunds",
    responses=read_responses(),
    **TYPED,
)
async def get_activity(
    request: Request,
    response: Response,
    caller: CustomerDep,
    from_: FromParam = None,
    to: ToParam = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """Billable calls per UTC day overlapping [from, to), net of refunds; ≤ 366 days."""
    span = day_range(from_, to, datetime.now(UTC))
    async with fresh_read(request, ACTIVITY, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(activity.ACTIVITY_DAYS, caller.account_id, span.first, span.stop)
    fresh.stamp(response)
    return {
        "from": iso(span.start),
        "to": iso(span.end),
        "days": [
            {
                "day": r["day"].isoformat(),
                "scans": r["scans"],
                "credits": r["credits"],
                "refunds": r["refunds"],
            }
            for r in rows
        ],
        "ledgerSeq": fresh.seq,
    }
