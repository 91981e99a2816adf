"""Grants (credits) of an account from `grants_view`, with the grant entry's custom metadata.

Filters follow the reference's list-credits semantics: `covering_date` (access covers that
instant), `starting_at` (any access on or after), `effective_before` (any access before,
exclusive), all on the grant's access window (`effective_at`, else its issue, to `expires_at`),
so a `scheduled` grant (not yet effective: state `scheduled`, remaining 0, `amount` what it will
bring) is listed by default and found by a `covering_date` in its window. A grant is archived
once expired or voided (or past its expiry while the expiry entry is still on its way); a
scheduled grant is not archived; archived grants are hidden unless asked for. Oldest first by
`granted_seq`, keyset-paginated by an opaque `next_page` token.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from projections.grant_entries import GRANTED, SCHEDULED, whole
from services.api.reads.common import iso

DEFAULT_LIMIT = 25
MAX_LIMIT = 25
LEDGER_PER_GRANT = 100  # include_ledgers: a grant's newest entries, at most this many

# $1 account, $2 covering, $3 starting_at, $4 effective_before, $5 include archived,
# $6 granted_seq after (cursor), $7 now, $8 one grant id, $9 limit. NULL filters are off.
GRANTS_PAGE = """
SELECT g.grant_id, g.kind, g.priority, g.amount, g.remaining, g.effective_at, g.expires_at,
       g.applies_to, g.source, g.name, g.state, g.granted_seq, g.closed_seq, g.granted_at,
       (g.state IN ('expired', 'voided') OR coalesce(g.expires_at <= $7, false)) AS archived,
       e.metadata
FROM grants_view g
LEFT JOIN ledger_entries e ON e.account_id = g.account_id AND e.seq = g.granted_seq
WHERE g.account_id = $1
  AND ($2::timestamptz IS NULL OR (coalesce(g.effective_at, g.granted_at) <= $2
                                   AND (g.expires_at IS NULL OR g.expires_at > $2)))
  AND ($3::timestamptz IS NULL OR g.expires_at IS NULL OR g.expires_at > $3)
  AND ($4::timestamptz IS NULL OR coalesce(g.effective_at, g.granted_at) < $4)
  AND ($5::boolean OR (g.state IN ('active', 'scheduled') AND coalesce(g.expires_at > $7, true)))
  AND ($6::bigint IS NULL OR g.granted_seq > $6)
  AND ($8::text IS NULL OR g.grant_id = $8)
ORDER BY g.granted_seq
LIMIT $9
"""


def grant_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["grant_id"],
        "name": row["name"],
        "bucket": row["kind"],
        "priority": row["priority"],
        "amount": row["amount"],
        "remaining": row["remaining"],
        "source": row["source"],
        "state": row["state"],
        "archived": row["archived"],
        "schedule": {
            "effectiveAt": iso(row["effective_at"] or row["granted_at"]),
            "expiresAt": iso(row["expires_at"]),
        },
        "appliesTo": row["applies_to"],
        "metadata": custom_metadata(row["metadata"] or {}),
        "grantedAt": iso(row["granted_at"]),
        "grantedSeq": row["granted_seq"],
        "closedSeq": row["closed_seq"],
    }


def custom_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The grant entry's metadata without the figures the core adds to it (`granted`,
    `scheduled`: integers, where custom fields are text), which the row states already."""
    return {
        k: v
        for k, v in metadata.items()
        if k not in (GRANTED, SCHEDULED) or whole(metadata, k) is None
    }
