-- Refund lineage without an index entry per consume (issue 14).
-- A refund finds its call's consume entries and earlier refunds. The consumes were found by
-- `ledger_entries_by_source` (account_id, source): one entry per ledger row, inserted at a
-- random place in the account's range (sources carry the request id), which was 35-50 % of the
-- cost of the writer's ledger COPY (BENCHMARKS.md). The call's idempotency row already leads to
-- them: its entries are one command's, at seqs first_seq .. last_seq of its account, so the
-- consumes are a primary-key range scan from `processed_requests`; only refund entries keep an
-- index by source (a refund command's entries come at any later seq).
-- last_seq: the seq of the last entry the request's command wrote; NULL exactly when first_seq
-- is (the command wrote no entry: a free call). Rows written before this migration get their
-- consumes' last seq from one pass over the ledger (and their first seq where it was not
-- recorded); one whose command wrote entries but no consume (an expiry due, a zero capture)
-- gets its first seq: its range holds no consume, as before.
-- The CHECK makes a writer older than this migration (its COPY leaves last_seq NULL) fail its
-- batch loudly instead of recording calls whose consumes no refund would find
-- (docs/operations.md, Upgrading). The whole migration is one transaction: it holds
-- processed_requests and ledger_entries locked for its length (a pass over the ledger and an
-- index build over its refunds), which is why every writer is stopped first anyway.
ALTER TABLE processed_requests ADD COLUMN last_seq bigint;

UPDATE processed_requests p
SET first_seq = coalesce(p.first_seq, c.first_seq),
    last_seq = coalesce(c.last_seq, p.first_seq)
FROM (
    SELECT account_id, substr(source, 9) AS request_id, min(seq) AS first_seq,
           max(seq) AS last_seq
    FROM ledger_entries
    WHERE reason = 'consume' AND starts_with(source, 'request:')
    GROUP BY account_id, substr(source, 9)
) c
WHERE p.account_id = c.account_id AND p.request_id = c.request_id;
UPDATE processed_requests SET last_seq = first_seq
WHERE last_seq IS NULL AND first_seq IS NOT NULL;

ALTER TABLE processed_requests ADD CONSTRAINT processed_requests_seq_range
    CHECK ((first_seq IS NULL) = (last_seq IS NULL) AND last_seq >= first_seq);

CREATE INDEX ledger_entries_refunds_by_source ON ledger_entries (account_id, source)
    WHERE reason = 'refund';
DROP INDEX ledger_entries_by_source;
