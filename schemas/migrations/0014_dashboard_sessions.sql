-- Dashboard sign-in links (POST /v1/admin/accounts/{account_id}/dashboard-sessions). A link
-- carries a one-time token; only its SHA-256 is stored. The dashboard trades the token once
-- (`exchanged_at`) for a customer key of the account (`key_id`, in api_keys, expiring with the
-- link), which it sends as Bearer. Admin-side only: the reader role never reads this table.
CREATE TABLE dashboard_sessions (
    account_id   text        NOT NULL,
    session_id   text        NOT NULL,
    token_sha256 text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    exchanged_at timestamptz,
    key_id       text,
    PRIMARY KEY (account_id, session_id)
);
