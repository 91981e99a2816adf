-- One checkpoint per account for every model of the live projector (issue 14). The models commit
-- in one transaction per partition batch, so their per-account checkpoints were always equal:
-- the account's `balance_view` row is now the checkpoint of all four (`last_seq`, and
-- `last_source`, the source of the entry at `last_seq`, which activity needs to count a call
-- once). Three `projection_checkpoints` rows per account locked and saved on every batch were
-- the largest share of the projector's Postgres time.

-- A rebuild in progress built its shadows in the old shape: it starts again from the beginning
-- (the live models are untouched; `projections rebuild` resumes nothing and begins anew).
DROP TABLE IF EXISTS projection_rebuild, balance_view_rebuild, activity_days_rebuild,
    grants_view_rebuild, projection_checkpoints_rebuild, endpoint_credits_rebuild;

ALTER TABLE balance_view ADD COLUMN last_source text;

-- The upgrade in place: every checkpoint row agrees with its account's view (they were written
-- in the same transactions), else the models are not where one checkpoint could say, and the
-- projector must not resume on a guess: stop, and run `projections rebuild` before upgrading.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1
        FROM balance_view v
        CROSS JOIN (VALUES ('activity'), ('usage'), ('grants')) AS p(projection)
        LEFT JOIN projection_checkpoints c
               ON c.account_id = v.account_id AND c.projection = p.projection
        WHERE coalesce(c.last_seq, 0) <> v.last_seq
    ) OR EXISTS (
        SELECT 1 FROM projection_checkpoints c
        WHERE c.last_seq > 0
          AND NOT EXISTS (SELECT 1 FROM balance_view v WHERE v.account_id = c.account_id)
    ) THEN
        RAISE EXCEPTION 'projection_checkpoints disagree with balance_view.last_seq: '
            'run `creditledger projections rebuild` with the previous version, then migrate';
    END IF;
END
$$;

UPDATE balance_view v SET last_source = c.last_source
FROM projection_checkpoints c
WHERE c.account_id = v.account_id AND c.projection = 'activity' AND c.last_source IS NOT NULL;

DROP TABLE projection_checkpoints;
