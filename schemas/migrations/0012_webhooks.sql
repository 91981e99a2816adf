-- Webhooks (services/webhooks, services/api/routes_webhooks.py): endpoints registered through the
-- admin API, one delivery per (alert, endpoint) and one row per try.
--
-- An endpoint belongs to no account (it receives every account's alerts), so its key is its id.
-- Its secret is kept as given (not hashed): the worker signs every delivery with it. It is shown
-- once, at creation; the admin API never answers it again. A deleted endpoint stays (its
-- deliveries and their tries refer to it) with `deleted_at` set, and receives nothing more.
CREATE TABLE webhook_endpoints (
    endpoint_id text        PRIMARY KEY,
    url         text        NOT NULL,
    events      text[]      NOT NULL,  -- alert types it receives; empty: every type
    description text        NOT NULL DEFAULT '',
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- One alert for one endpoint: the body every try sends (byte for byte, so the event `id` and
-- the signed text are the same on every try) and where its delivery stands. `pending` rows
-- with `next_try_at` due are what the worker sends next; a worker sending one moves its
-- `next_try_at` ahead by a lease first, so a restart (or a second worker) resumes it after
-- the lease and nothing pending is lost. Final states: `delivered`, `failed` (the retry window
-- passed), `cancelled` (the endpoint was deleted).
CREATE TABLE webhook_deliveries (
    account_id  text        NOT NULL,
    event_id    text        NOT NULL,  -- the alert's alert_id: the webhook's `id`
    endpoint_id text        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    event_type  text        NOT NULL,
    body        bytea       NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    tries       integer     NOT NULL DEFAULT 0,
    next_try_at timestamptz,  -- NULL once final
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (account_id, event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_try_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint
    ON webhook_deliveries (endpoint_id, created_at DESC, account_id, event_id);

-- Every try: its HTTP status (NULL when no answer came), how long it took, and what went wrong.
CREATE TABLE webhook_attempts (
    account_id   text        NOT NULL,
    event_id     text        NOT NULL,
    endpoint_id  text        NOT NULL,
    try          integer     NOT NULL CHECK (try >= 1),
    status_code  integer,
    latency_ms   integer     NOT NULL,
    error        text,
    attempted_at timestamptz NOT NULL,
    next_try_at  timestamptz,  -- when the next try was scheduled (NULL: none, final)
    PRIMARY KEY (account_id, event_id, endpoint_id, try),
    FOREIGN KEY (account_id, event_id, endpoint_id)
        REFERENCES webhook_deliveries (account_id, event_id, endpoint_id)
);
