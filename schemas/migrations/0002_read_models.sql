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
