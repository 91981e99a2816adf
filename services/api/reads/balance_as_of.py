"""`GET /v1/credits/balance?as_of=T&by=occurred|recorded`: the balance as it stood at T.

The answer is `creditledger balance ACCOUNT --as-of T --by B` (services/history/as_of.py,
`balance_as_of`), by the same function, read as the customer (row-level security) from the
ledger: the balance endpoint's fields (`balance`, `reserved`, `available`, `scheduled`,
`overage`, `grantedTotal`, `consumedTotal`, `buckets`, `resetAt`, `lastUpdated`, `ledgerSeq`)
and what pins the answer down (`asOf`, `by`, `unbucketed`, `entries`). An instant before the
account's first entry answers the empty balance (the CLI says "no ledger entry" instead).

What event time had made due at T (a grant expired, a scheduled grant effective) counts even
before the writer recorded it, as the live balance, `/check` and explain count it: the answer is
what the balance would have answered at T. `by` without `as_of` is as of now (by ledger time:
every entry recorded, as explain reads it), so it answers the live balance's figures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request, Response

from services.api.reads.common import iso, parse_instant
from services.api.reads.freshness import LEDGER, fresh_read
from services.history.as_of import TimeAxis, balance_as_of, balance_now

AsOfParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description="ISO-8601 instant with offset (or a UTC date): what the balance would have "
        "answered then (what was due then, expiries and activations, applied); default now",
    ),
]
ByParam = Annotated[
    Literal["recorded", "occurred"] | None,
    Query(
        description="`recorded` (default): the ledger as recorded by `as_of` (a state it "
        "really was in; never changes); `occurred`: every entry that had happened by then"
    ),
]


def instant(raw_as_of: str | None, now: datetime) -> datetime:
    """`as_of` as a UTC instant (422 problem+json when it is not one); absent: now."""
    return parse_instant(raw_as_of, "as_of") or now


def empty_answer(account_id: str, as_of: datetime, by: TimeAxis) -> dict[str, Any]:
    """Before the account's first entry: nothing granted, nothing spent."""
    return {
        "accountId": account_id, "asOf": iso(as_of), "by": by, "balance": 0, "reserved": 0,
        "available": 0, "scheduled": 0, "overage": 0, "grantedTotal": 0, "consumedTotal": 0,
        "buckets": [], "unbucketed": 0, "resetAt": None, "ledgerSeq": 0, "entries": 0,
        "lastUpdated": None,
    }  # fmt: skip


async def balance_as_of_response(
    request: Request,
    account_id: str,
    raw_as_of: str | None,
    by: TimeAxis | None,
    min_seq: int | None,
    now: datetime,
) -> Response:
    at, axis = instant(raw_as_of, now), by or "recorded"
    async with fresh_read(request, LEDGER, account_id, min_seq) as (conn, fresh):
        if raw_as_of is None:
            result = await balance_now(conn, account_id, axis, now)
        else:
            result = await balance_as_of(conn, account_id, at, by=axis)
    body = result.to_json() if result is not None else empty_answer(account_id, at, axis)
    headers = {**fresh.headers, "X-Credits-Remaining": str(body["available"])}
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)
