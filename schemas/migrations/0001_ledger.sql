-- The ledger and what the writer needs to append to it exactly once.
-- Every account-data table leads its key with account_id, so the data can be partitioned or
-- distributed by account the way Kafka partitions and writer instances already split the work.

CREATE TABLE ledger_entries (
    account_id      text        NOT NULL,
    seq             bigint      NOT NULL CHECK (seq > 0),
    entry_id        uuid        NOT NULL,
    delta           bigint      NOT NULL,
    balance_after   bigint      NOT NULL,
    reason          text        NOT NULL,
    source          text        NOT NULL,
    bucket_grant_id text,
    bucket_kind     text,
    bucket_expires_at timestamptz,  -- on grant entries: when the bucket expires
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (account_id, seq)
);

-- The writer's snapshot of each account: seq and balance of its last entry, and its live buckets
-- (exhausted buckets are kept until issue-3 expiry handling prunes them).
CREATE TABLE writer_accounts (
    account_id text        NOT NULL PRIMARY KEY,
    seq        bigint      NOT NULL DEFAULT 0,
    balance    bigint      NOT NULL DEFAULT 0,
    buckets    jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- grant_id -> bucket
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Idempotency, per account, forever: a request_id (usage) or command_id (commands) is applied
-- once; the payload hash tells a harmless redelivery from a reuse with another payload.
CREATE TABLE processed_requests (
    account_id     text        NOT NULL,
    request_id     text        NOT NULL,
    payload_sha256 bytea       NOT NULL,
    first_seq      bigint,     -- NULL when the call wrote no entry (free call)
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, request_id)
);

CREATE TABLE processed_commands (
    account_id     text        NOT NULL,
    command_id     text        NOT NULL,
    payload_sha256 bytea       NOT NULL,
    status         text        NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason         text,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, command_id)
);

-- Transactional outbox: rows are written with the entries and published after commit, so
-- `credits.ledger.v1` and the DLTs never disagree with the ledger (no dual write).
CREATE TABLE outbox (
    account_id text   NOT NULL,
    outbox_id  bigserial,
    topic      text   NOT NULL,
    key        bytea,
    value      bytea  NOT NULL,
    headers    jsonb  NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (account_id, outbox_id)
);
CREATE INDEX outbox_publish_order ON outbox (outbox_id);

CREATE TABLE dead_letters (
    account_id    text        NOT NULL,  -- the record key when it is not a valid account id: ''
    topic         text        NOT NULL,
    kafka_partition integer   NOT NULL,
    kafka_offset  bigint      NOT NULL,
    error_code    text        NOT NULL,
    error_message text        NOT NULL,
    raw_value     bytea,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, topic, kafka_partition, kafka_offset)
);

-- Consumer positions, committed in the same transaction as the work they cover. Infrastructure,
-- not account data: keyed by consumer and partition (a reference table under distribution).
CREATE TABLE kafka_offsets (
    consumer        text    NOT NULL,
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, kafka_partition)
);
