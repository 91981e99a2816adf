"""A request's ledger entries, in SQL: what the writer's refund lineage and `reprice` read.

For each ($1 account, $2 request id) pair: its consume entries and its refund entries. The
consumes are the request's command's own entries, at seqs `first_seq` .. `last_seq` of its
`processed_requests` row (a primary-key range: the ledger keeps no index entry per consume,
migration 0022); refunds come at any later seq and keep an index by source, of refunds only.
"""

from __future__ import annotations

REQUEST_ENTRIES = """
SELECT e.*
FROM unnest($1::text[], $2::text[]) AS k(account_id, request_id)
JOIN processed_requests p ON p.account_id = k.account_id AND p.request_id = k.request_id
JOIN ledger_entries e
  ON e.account_id = p.account_id AND e.seq BETWEEN p.first_seq AND p.last_seq
WHERE e.reason = 'consume' AND e.source = 'request:' || k.request_id
UNION ALL
SELECT e.*
FROM unnest($1::text[], $2::text[]) AS k(account_id, request_id)
JOIN ledger_entries e ON e.account_id = k.account_id AND e.source = 'refund:' || k.request_id
WHERE e.reason = 'refund'
"""
