"""Customer reads: all traffic (free calls too) grouped by endpoint, day or month."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from services.api.models import TYPED
from services.api.models.reads import Usage
from services.api.read_params import (
    CustomerDep,
    FromParam,
    ToParam,
    read_responses,
)
from services.api.reads import usage
from services.api.reads.common import (
    day_range,
    iso,
)
from services.api.reads.freshness import (
    USAGE,
    MinSeq,
    fresh_read,
)

router = APIRouter(tags=["credits"])


@router.get(
    "/v1/usage",
    response_model=Usage,
    operation_id="getUsage",
    summary="All traffic (free calls too) and net credits, by endpoint, day or month",
    responses=read_responses(),
    **TYPED,
)
async def get_usage(
    request: Request,
    response: Response,
    caller: CustomerDep,
    group_by: Literal["endpoint", "day", "month"] = "endpoint",
    from_: FromParam = None,
    to: ToParam = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """All traffic (free calls too) and net credits, grouped in SQL; ≤ 366 days."""
    span = day_range(from_, to, datetime.now(UTC))
    async with fresh_read(request, USAGE, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            usage.USAGE_SQL[group_by], caller.account_id, span.first, span.stop,
            usage.MAX_ROWS + 1,
        )  # fmt: skip
    fresh.stamp(response)
    return {
        "groupBy": group_by,
        "from": iso(span.start),
        "to": iso(span.end),
        "rows": [usage.usage_row(r) for r in rows[: usage.MAX_ROWS]],
        "hasMore": len(rows) > usage.MAX_ROWS,
        "ledgerSeq": fresh.seq,
    }
