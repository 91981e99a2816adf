-- Webhook delivery leases with an owner, and the alert's time (services/webhooks/store.py).
--
-- `lease_token`: set afresh (a random uuid) each time a worker claims or inserts a pending
-- delivery; `next_try_at` is then when that lease ends. Renewing the lease, recording a try,
-- moving the delivery on and releasing it all require the holder's token and an unexpired
-- lease, so a worker whose lease lapsed (another worker claimed and sent the delivery since)
-- changes nothing and sends nothing. NULL: nobody holds it (a retry waiting to come due).
--
-- `alert_at`: when the alert was raised (its record's time on the alerts topic, not the event
-- time in its occurred_at, which a late event can make days old); the retry window counts from
-- it, also when the worker reads the alert late. NULL (rows recorded before this migration): the
-- window counts from created_at.
ALTER TABLE webhook_deliveries
    ADD COLUMN lease_token uuid,
    ADD COLUMN alert_at    timestamptz;
