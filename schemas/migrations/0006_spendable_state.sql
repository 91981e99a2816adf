-- Exact money (contract v1.1): `/check` and the balance read the writer's own account state, so
-- what is allowed, what is shown and what is charged come from one state and one rule
-- (services/core/spend.py). The API's reader role may read it, one account at a time.
GRANT SELECT ON writer_accounts TO creditledger_api;
ALTER TABLE writer_accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON writer_accounts FOR SELECT TO creditledger_api
    USING (account_id = current_setting('creditledger.account_id', true));

-- The state now carries its totals (grantedTotal, consumedTotal): written from the ledger for
-- accounts the writer snapshotted before they were kept.
UPDATE writer_accounts w
SET snapshot = w.snapshot || jsonb_build_object('totals', jsonb_build_array(t.granted, t.consumed))
FROM (
    SELECT account_id,
           coalesce(sum(delta) FILTER (WHERE reason = 'grant'), 0) AS granted,
           coalesce(-sum(delta) FILTER (WHERE reason IN ('consume', 'refund')), 0) AS consumed
    FROM ledger_entries GROUP BY account_id
) t
WHERE t.account_id = w.account_id AND NOT w.snapshot ? 'totals';
