-- The HTTP API's own state: admin commands it published, Idempotency-Key answers, key expiry.
-- Every table leads its key with account_id (the account the admin write is about).

-- Every command the admin API published: lets `GET /v1/admin/commands/{id}` find its account by
-- the id alone, and a dead-lettered command by the partition and offset Kafka acknowledged.
CREATE TABLE api_commands (
    account_id      text        NOT NULL,
    command_id      text        NOT NULL,
    type            text        NOT NULL,
    kafka_partition integer,    -- NULL until Kafka acknowledged the record
    kafka_offset    bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, command_id)
);
CREATE INDEX api_commands_by_id ON api_commands (command_id);

-- Idempotency-Key: the first request claims (account, key) with its fingerprint and the exact
-- command bytes; once Kafka acknowledged, the answer is stored and replayed byte for byte.
-- A claim whose request died is taken over after `claimed_at` is stale, republishing the same
-- bytes (the writer applies a command_id once), so a retry is idempotent end to end.
CREATE TABLE api_idempotency_keys (
    account_id      text        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     bytea       NOT NULL,  -- sha256(method, path, canonical JSON body)
    command_id      text        NOT NULL,
    command         bytea       NOT NULL,  -- the bytes published to the commands topic
    response_status integer,               -- NULL while the first request is in flight
    response_body   bytea,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (account_id, idempotency_key)
);

-- Key rotation with overlap: a key past `expires_at` answers 403 key-expired.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
