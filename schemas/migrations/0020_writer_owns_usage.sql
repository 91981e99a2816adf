-- The writer owns the whole `endpoint_usage` row (issue 14): the credits of the entries it writes
-- (net of refunds, services/core/usage.py) go in the same upsert as the traffic, in its batch
-- transaction, and the projector no longer has a usage model. The same rows were upserted twice
-- per batch, once by each.

-- Entries the old projector had not applied to usage yet would never get their credits: the new
-- writer adds only its own, and no projector adds any. Every account's ledger must be at or
-- below its checkpoint (`balance_view.last_seq`, every old model's) before this applies.
-- Loose index scans: one probe per account on the ledger's primary key, not the whole ledger.
-- An outbox row is an entry the projector cannot have applied yet. The check is of one instant:
-- no writer or projector of the old version may run once it has passed (docs/operations.md).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM outbox) OR EXISTS (
        WITH RECURSIVE accounts(account_id) AS (
            SELECT min(account_id) FROM ledger_entries
            UNION ALL
            SELECT (SELECT min(e.account_id) FROM ledger_entries e
                    WHERE e.account_id > a.account_id)
            FROM accounts a WHERE a.account_id IS NOT NULL
        )
        SELECT 1 FROM accounts a
        LEFT JOIN balance_view v ON v.account_id = a.account_id
        WHERE a.account_id IS NOT NULL
          AND (SELECT max(e.seq) FROM ledger_entries e WHERE e.account_id = a.account_id)
              > coalesce(v.last_seq, 0)
    ) THEN
        RAISE EXCEPTION 'ledger entries above balance_view.last_seq, not yet in endpoint_usage: '
            'let the projector catch up before upgrading (the outbox drained, every writer '
            'stopped, the old projector running until `creditledger projections status` shows '
            'no account behind), then migrate';
    END IF;
END
$$;

COMMENT ON COLUMN endpoint_usage.credits IS
    'credits net of refunds, written by the writer with the entries (services/core/usage.py)';
