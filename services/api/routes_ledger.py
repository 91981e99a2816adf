"""Customer reads: the ledger, paged (page, legacy offset, or cursor), and one entry."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.api.models import TYPED
from services.api.models.reads import LedgerEntry, LedgerPage
from services.api.problems import Problem
from services.api.read_params import (
    CursorParam,
    CustomerDep,
    FromParam,
    ToParam,
    read_responses,
    seq_cursor,
)
from services.api.reads import ledger
from services.api.reads.common import (
    decode_cursor,
    encode_cursor,
    iso,
    parse_instant,
)
from services.api.reads.freshness import (
    LEDGER,
    MinSeq,
    fresh_read,
)

router = APIRouter(tags=["credits"])
MAX_SKIP = 1_000_000  # page/offset beyond this: use the cursor


def _reasons(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    wanted = sorted({part.strip() for part in raw.split(",") if part.strip()})
    unknown = [r for r in wanted if r not in ledger.REASONS]
    if not wanted or unknown:
        raise Problem(422, "invalid-request", f"reason: one or more of {', '.join(ledger.REASONS)}")
    return wanted


def _expansions(raw: str | None) -> set[str]:
    wanted = {part.strip() for part in (raw or "").split(",") if part.strip()}
    if wanted - set(ledger.EXPANSIONS):
        raise Problem(422, "invalid-request", "expand: only 'request' is supported")
    return wanted


@router.get(
    "/v1/credits/ledger",
    response_model=LedgerPage,
    operation_id="listLedgerEntries",
    summary="Ledger entries, newest first, filtered and paged",
    responses=read_responses(400),
    **TYPED,
)
async def get_ledger(
    request: Request,
    response: Response,
    caller: CustomerDep,
    from_: FromParam = None,
    to: ToParam = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    page: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    cursor: CursorParam = None,
    expand: Annotated[str | None, Query(max_length=100)] = None,
    min_seq: MinSeq = None,
) -> dict[str, Any]:
    """Entries newest first (seq DESC), filtered on `occurred_at` in [from, to) and `reason`."""
    start, end = parse_instant(from_, "from"), parse_instant(to, "to", end=True)
    reasons = _reasons(reason)
    with_request = "request" in _expansions(expand)
    filters = {"from": iso(start), "to": iso(end), "reason": reasons}
    before_seq: int | None = None
    if cursor is not None:
        if page is not None or offset is not None:
            raise Problem(400, "malformed-request", "cursor cannot be combined with page/offset")
        position = seq_cursor(decode_cursor(cursor, "cursor", filters))
        before_seq, skip, page_no = position.key, 0, position.page
    else:
        if page is not None and offset is not None:
            raise Problem(400, "malformed-request", "use page or offset, not both")
        skip = offset if offset is not None else ((page or 1) - 1) * limit
        if skip > MAX_SKIP:
            raise Problem(422, "invalid-request", f"page/offset beyond {MAX_SKIP} rows: use cursor")
        page_no = skip // limit + 1
    sql = ledger.LEDGER_PAGE_WITH_REQUEST if with_request else ledger.LEDGER_PAGE
    async with fresh_read(request, LEDGER, caller.account_id, min_seq) as (conn, fresh):
        rows = await conn.fetch(
            sql, caller.account_id, start, end, reasons, before_seq, limit + 1, skip
        )
    fresh.stamp(response)
    has_more = len(rows) > limit
    rows = rows[:limit]
    render = ledger.entry_with_request if with_request else ledger.entry_json
    return {
        "data": [render(r) for r in rows],
        "page": page_no,
        "limit": limit,
        "hasMore": has_more,
        "nextCursor": encode_cursor(rows[-1]["seq"], page_no + 1, filters) if has_more else None,
        "ledgerSeq": fresh.seq,
    }


@router.get(
    "/v1/credits/ledger/{entry_id}",
    response_model=LedgerEntry,
    operation_id="getLedgerEntry",
    summary="One ledger entry",
    responses=read_responses(404),
    **TYPED,
)
async def get_ledger_entry(
    entry_id: str, request: Request, response: Response, caller: CustomerDep
) -> dict[str, Any]:
    try:
        wanted = uuid.UUID(entry_id)
    except ValueError:
        raise Problem(404, "not-found", "no such ledger entry") from None
    async with fresh_read(request, LEDGER, caller.account_id, None) as (conn, fresh):
        row = await conn.fetchrow(ledger.ONE_ENTRY, caller.account_id, wanted)
    if row is None:
        raise Problem(404, "not-found", "no such ledger entry")
    fresh.stamp(response)
    return ledger.entry_json(row)
