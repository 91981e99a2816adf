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
    bucket_terms    jsonb,          -- on grant entries: effective_at, priority, applies_to
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    reserved_delta  bigint      NOT NULL DEFAULT 0,  -- holds: credits moved into (+) or out of reserve
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (account_id, seq)
);
-- Refund lineage: a refund finds the consume entries of its request by source.
CREATE INDEX ledger_entries_by_source ON ledger_entries (account_id, source);

-- The writer's snapshot of each account: seq and balance of its last entry, and the rest of its
-- state (buckets, holds, settings, alert flags) as JSON. `next_due_at` is when its next bucket
-- or hold expires: the scheduler's cue to publish an `expire` command.
CREATE TABLE writer_accounts (
    account_id  text        NOT NULL PRIMARY KEY,
    seq         bigint      NOT NULL DEFAULT 0,
    balance     bigint      NOT NULL DEFAULT 0,
    snapshot    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    next_due_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX writer_accounts_due ON writer_accounts (next_due_at) WHERE next_due_at IS NOT NULL;

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
