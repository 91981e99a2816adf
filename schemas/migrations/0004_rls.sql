-- Row-level security: the second wall behind the API's per-account queries. Customer reads run
-- as `creditledger_api` with `creditledger.account_id` set for the transaction
-- (services/api/reads/freshness.py); under that role a query sees only that account's rows,
-- even one that forgot its filter. Writers, projectors and admin paths keep the owner's role.
DO $$
BEGIN
    CREATE ROLE creditledger_api NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles are per cluster: another database of the cluster made it first
END
$$;
GRANT creditledger_api TO CURRENT_USER;  -- so a non-superuser owner may SET ROLE to it
GRANT USAGE ON SCHEMA public TO creditledger_api;

DO $$
DECLARE
    account_table text;
BEGIN
    FOREACH account_table IN ARRAY ARRAY[
        'ledger_entries', 'processed_requests', 'balance_view', 'activity_days',
        'endpoint_usage', 'grants_view', 'projection_checkpoints', 'accounts'
    ] LOOP
        EXECUTE format('GRANT SELECT ON %I TO creditledger_api', account_table);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', account_table);
        EXECUTE format(
            'CREATE POLICY own_account ON %I FOR SELECT TO creditledger_api '
            'USING (account_id = current_setting(''creditledger.account_id'', true))',
            account_table
        );
    END LOOP;
END
$$;
