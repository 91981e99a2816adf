-- Several ledger messages in one outbox row (issue 14). One row per ledger entry cost Postgres a
-- heap tuple, two index entries and a delete per entry, and the writer and relay a row each to
-- encode and decode. A packed row holds up to a few thousand messages of one batch, all of its
-- `topic`, in the batch's entry order, each with its own key and no headers. `value` is then
-- the messages framed one after another: a 4-byte big-endian key length, the key, a 4-byte
-- big-endian value length, the value (services/writer/outbox.py `pack`/`unpack`). `packed` is
-- how many messages the row holds; NULL is the one-message row (`key`, `value`, `headers`).
-- A packed row spans accounts: it is filed under its first message's account (`account_id`).
ALTER TABLE outbox ADD COLUMN packed integer;
