"""Ledger rows for the API: the contract's ledger entry, as on `credits.ledger.v1`.

Rows keep the contract's field names (`balance_after`, `occurred_at`, `bucket.grant_id`…), so a
client parses the topic and the API alike; the envelope around them is camelCase.
Pagination is newest first (seq DESC). `page`/`offset` skip rows; a cursor is keyset (`seq <`
the last seq returned), so it is stable while new entries arrive.
"""

from __future__ import annotations

from typing import Any, get_args

import asyncpg

from schemas.ledger import EntryReasonName
from services.api.reads.common import iso

REASONS: tuple[str, ...] = get_args(EntryReasonName)  # the one list: schemas/ledger.py
EXPANSIONS = ("request",)
ENTRY_COLUMNS = """e.entry_id, e.account_id, e.seq, e.delta, e.balance_after, e.reason, e.source,
       e.bucket_grant_id, e.bucket_kind, e.metadata, e.reserved_delta, e.occurred_at,
       e.recorded_at"""

# $1 account, $2 from (incl.), $3 to (excl.) on occurred_at, $4 reasons, $5 seq below (cursor),
# $6 limit, $7 offset. NULL filters are off.
LEDGER_PAGE = f"""
SELECT {ENTRY_COLUMNS}
FROM ledger_entries e
WHERE e.account_id = $1
  AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
  AND ($3::timestamptz IS NULL OR e.occurred_at < $3)
  AND ($4::text[] IS NULL OR e.reason = ANY($4::text[]))
  AND ($5::bigint IS NULL OR e.seq < $5)
ORDER BY e.seq DESC
LIMIT $6 OFFSET $7
"""  # noqa: S608 - a constant column list, no input
# The same page with each consume joined to the usage event it charged (by request_id).
LEDGER_PAGE_WITH_REQUEST = f"""
SELECT {ENTRY_COLUMNS},
       p.request_id AS req_request_id, p.recorded_at AS req_recorded_at,
       p.first_seq AS req_first_seq
FROM ledger_entries e
LEFT JOIN processed_requests p
  ON e.reason = 'consume' AND e.source LIKE 'request:%'
 AND p.account_id = e.account_id AND p.request_id = substr(e.source, 9)
WHERE e.account_id = $1
  AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
  AND ($3::timestamptz IS NULL OR e.occurred_at < $3)
  AND ($4::text[] IS NULL OR e.reason = ANY($4::text[]))
  AND ($5::bigint IS NULL OR e.seq < $5)
ORDER BY e.seq DESC
LIMIT $6 OFFSET $7
"""  # noqa: S608 - a constant column list, no input
ONE_ENTRY = f"""
SELECT {ENTRY_COLUMNS} FROM ledger_entries e WHERE e.account_id = $1 AND e.entry_id = $2
"""  # noqa: S608 - a constant column list, no input
# A grant's own entries (those naming its bucket), newest first, at most $3 per grant.
GRANT_ENTRIES = f"""
SELECT * FROM (
    SELECT {ENTRY_COLUMNS},
           row_number() OVER (PARTITION BY e.bucket_grant_id ORDER BY e.seq DESC) AS nth
    FROM ledger_entries e
    WHERE e.account_id = $1 AND e.bucket_grant_id = ANY($2::text[])
) t
WHERE t.nth <= $3 + 1
ORDER BY t.bucket_grant_id, t.seq DESC
"""  # noqa: S608 - a constant column list, no input


def entry_json(row: asyncpg.Record) -> dict[str, Any]:
    bucket = None
    if row["bucket_grant_id"] is not None:
        bucket = {"grant_id": row["bucket_grant_id"], "kind": row["bucket_kind"]}
    return {
        "id": str(row["entry_id"]),
        "account_id": row["account_id"],
        "seq": row["seq"],
        "delta": row["delta"],
        "balance_after": row["balance_after"],
        "reason": row["reason"],
        "source": row["source"],
        "bucket": bucket,
        "metadata": row["metadata"],
        "reserved_delta": row["reserved_delta"],
        "occurred_at": iso(row["occurred_at"]),
        "recorded_at": iso(row["recorded_at"]),
    }


def entry_with_request(row: asyncpg.Record) -> dict[str, Any]:
    """`request`: the usage event a consume charged, present only when one matches."""
    entry = entry_json(row)
    if row["req_request_id"] is not None:
        metadata = row["metadata"] or {}
        entry["request"] = {
            "request_id": row["req_request_id"],
            "endpoint": metadata.get("endpoint"),
            "key_id": metadata.get("key_id"),
            "status_code": metadata.get("status_code"),
            "occurred_at": entry["occurred_at"],
            "recorded_at": iso(row["req_recorded_at"]),
            "first_seq": row["req_first_seq"],
        }
    return entry
