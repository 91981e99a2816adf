"""What every customer read shares: the caller, the query parameters' shapes, the documented
errors and headers (`X-Ledger-Seq`, `X-Ledger-Stale`, `X-Credits-Remaining`), the seq cursor.

Every read answers `X-Ledger-Seq` (and `ledgerSeq`) and takes `min_seq`: see reads/freshness.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from services.api.auth import Caller, customer
from services.api.problems import Problem, problem_responses
from services.api.reads.common import MAX_BIGINT, Cursor

CustomerDep = Annotated[Caller, Depends(customer)]
TimeParam = Annotated[str | None, Query(max_length=64)]
FromParam = Annotated[str | None, Query(alias="from", max_length=64)]
ToParam = Annotated[str | None, Query(alias="to", max_length=64)]
CursorParam = Annotated[str | None, Query(max_length=512)]
# What every customer read can answer besides 200; single objects add 404, paged lists 400.
READ_ERRORS = (400, 401, 403, 404, 422, 429)
FRESH_HEADERS = {
    "X-Ledger-Seq": {
        "description": "the account's last ledger seq this answer reflects",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-Ledger-Stale": {
        "description": "`true` when `min_seq` was not reached within the bounded wait",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
REMAINING_HEADER = {
    "X-Credits-Remaining": {
        "description": "the account's available credits",
        "required": True,
        "schema": {"type": "integer"},
    }
}


def read_responses(
    *extra_errors: int, headers: dict[str, Any] | None = None
) -> dict[int | str, Any]:
    ok: dict[int | str, Any] = {200: {"headers": {**FRESH_HEADERS, **(headers or {})}}}
    return {**ok, **problem_responses(*sorted({*READ_ERRORS, *extra_errors}))}


def seq_cursor(position: Cursor) -> Cursor:
    key = position.key
    if not isinstance(key, int) or isinstance(key, bool) or not 1 <= key <= MAX_BIGINT:
        raise Problem(400, "invalid-cursor", "cursor is not a valid cursor")
    return position
