-- Read models. Each row carries its own checkpoint (`last_seq`): applying an entry whose seq is
-- not above it changes nothing, so redelivery is harmless.

CREATE TABLE balance_view (
    account_id     text        NOT NULL PRIMARY KEY,
    last_seq       bigint      NOT NULL DEFAULT 0,
    balance        bigint      NOT NULL DEFAULT 0,
    reserved       bigint      NOT NULL DEFAULT 0,
    granted_total  bigint      NOT NULL DEFAULT 0,
    consumed_total bigint      NOT NULL DEFAULT 0,
    grants         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    last_updated   timestamptz
);

CREATE TABLE accounts (
    account_id text        NOT NULL PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    account_id    text        NOT NULL,
    key_id        text        NOT NULL,
    secret_sha256 text        NOT NULL UNIQUE,  -- only the hash is stored
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    PRIMARY KEY (account_id, key_id)
);

-- Per account and projection, the last ledger seq applied (and the source of that entry, so a
-- call spanning buckets counts once): the checkpoint of the models kept in several rows.
CREATE TABLE projection_checkpoints (
    account_id  text   NOT NULL,
    projection  text   NOT NULL,
    last_seq    bigint NOT NULL DEFAULT 0,
    last_source text,
    PRIMARY KEY (account_id, projection)
);

-- Billable activity per UTC day of the call: `scans` counts calls not fully refunded, `credits`
-- what they cost net of refunds, `refunds` the credits given back (credits + refunds = gross).
CREATE TABLE activity_days (
    account_id text   NOT NULL,
    day        date   NOT NULL,
    scans      bigint NOT NULL DEFAULT 0,
    credits    bigint NOT NULL DEFAULT 0,
    refunds    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
);

-- Per account, endpoint and UTC day. `credits` (net of refunds) comes from the ledger through
-- the projector; the traffic columns come from every accepted usage event, free calls included,
-- written by the writer in the transaction that accepts the event.
CREATE TABLE endpoint_usage (
    account_id       text   NOT NULL,
    endpoint         text   NOT NULL,
    day              date   NOT NULL,
    requests         bigint NOT NULL DEFAULT 0,
    successful       bigint NOT NULL DEFAULT 0,
    failed           bigint NOT NULL DEFAULT 0,
    latency_ms_total bigint NOT NULL DEFAULT 0,
    latency_samples  bigint NOT NULL DEFAULT 0,
    latency_ms_max   bigint NOT NULL DEFAULT 0,
    credits          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, endpoint, day)
);

-- Every grant (bucket) of an account, with what is left of it and its state.
CREATE TABLE grants_view (
    account_id   text        NOT NULL,
    grant_id     text        NOT NULL,
    kind         text        NOT NULL,
    priority     integer,
    amount       bigint      NOT NULL,
    remaining    bigint      NOT NULL,
    effective_at timestamptz,
    expires_at   timestamptz,
    applies_to   jsonb,  -- endpoint list, or null: every endpoint
    source       text        NOT NULL,
    name         text,
    state        text        NOT NULL CHECK (state IN ('active', 'expired', 'voided')),
    granted_seq  bigint      NOT NULL,
    closed_seq   bigint,
    granted_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, grant_id)
);
