-- The hot part of each account's state in narrow columns beside its JSON snapshot (issue 14).
-- A usage event changes only seq, balance, the totals and the remainders of the buckets it drew
-- from, yet the writer rewrote the whole snapshot for every account of every batch and Postgres
-- parsed it into jsonb again. Now the writer writes these columns every time and the snapshot
-- only when the rest of the state (the buckets' set or terms, holds, settings, flags) changed;
-- every reader takes the columns over the snapshot's copies (services/core/snapshot.py).
-- NULL: a row no writer saved since this migration, whose snapshot holds them itself.
-- bucket_remaining maps each bucket's grant id to its remaining credit, as the snapshot's
-- `buckets` object does (keyed, because jsonb keeps an object's keys in its own order).
-- Adding nullable columns without a default rewrites nothing: a brief lock on the table.
ALTER TABLE writer_accounts
    ADD COLUMN granted_total bigint,
    ADD COLUMN consumed_total bigint,
    ADD COLUMN bucket_remaining jsonb;
