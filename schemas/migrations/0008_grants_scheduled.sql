-- Scheduled grants (issue 12): a grant whose effective_at is ahead of its issue is `scheduled`
-- in grants_view until its activation entry. Widen the state check. A rebuild's swap replaces
-- the table with a copy (LIKE ... INCLUDING ALL) that keeps the constraint under its name, but
-- whatever the name, every check on `state` is replaced by the one below.
DO $$
DECLARE
    check_name text;
BEGIN
    FOR check_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'grants_view'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%state%'
    LOOP
        EXECUTE format('ALTER TABLE grants_view DROP CONSTRAINT %I', check_name);
    END LOOP;
END
$$;

ALTER TABLE grants_view ADD CONSTRAINT grants_view_state_check
    CHECK (state IN ('scheduled', 'active', 'expired', 'voided'));
