-- The hot part of each account's state in narrow columns beside its JSON snapshot (issue 14).
-- A usage event changes only seq, balance, the totals and the remainders of the buckets it drew
-- from, yet the writer rewrote the whole snapshot for every account of every batch and Postgres
-- parsed it into jsonb again. Now, when the rest of the state (the buckets' set or terms, holds,
-- settings, flags) is unchanged, the writer writes these columns and keeps the snapshot; else
-- it writes the whole snapshot and sets these to NULL. Every reader takes the columns, when not
-- NULL, over the snapshot's copies (services/core/snapshot.py). NULL: the snapshot holds them
-- (as on every row this migration finds).
-- bucket_remaining maps each bucket's grant id to its remaining credit, as the snapshot's
-- `buckets` object does (keyed, because jsonb keeps an object's keys in its own order).
-- Adding nullable columns without a default rewrites nothing: a brief lock on the table.
ALTER TABLE writer_accounts
    ADD COLUMN granted_total bigint,
    ADD COLUMN consumed_total bigint,
    ADD COLUMN bucket_remaining jsonb;
