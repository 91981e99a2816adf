-- Refund lineage without an index entry per consume (issue 14).
-- A refund finds its call's consume entries and earlier refunds. The consumes were found by
-- `ledger_entries_by_source` (account_id, source): one entry per ledger row, inserted at a
-- random place in the account's range (sources carry the request id), which was 35-50 % of the
-- cost of the writer's ledger COPY (BENCHMARKS.md). The call's idempotency row already leads to
-- them: its entries are one command's, at seqs first_seq .. last_seq of its account, so the
-- consumes are a primary-key range scan from `processed_requests`; only refund entries keep an
-- index by source (a refund command's entries come at any later seq).
-- last_seq: the seq of the last entry the request's command wrote (NULL with first_seq: a free
-- call). Rows written before this migration get their consumes' last seq (and their first seq
-- where it was not recorded), read through the old index before it goes.
ALTER TABLE processed_requests ADD COLUMN last_seq bigint;

UPDATE processed_requests p
SET first_seq = coalesce(p.first_seq, c.first_seq), last_seq = c.last_seq
FROM (
    SELECT account_id, substr(source, 9) AS request_id, min(seq) AS first_seq,
           max(seq) AS last_seq
    FROM ledger_entries
    WHERE reason = 'consume' AND starts_with(source, 'request:')
    GROUP BY account_id, substr(source, 9)
) c
WHERE p.account_id = c.account_id AND p.request_id = c.request_id;

CREATE INDEX ledger_entries_refunds_by_source ON ledger_entries (account_id, source)
    WHERE reason = 'refund';
DROP INDEX ledger_entries_by_source;
