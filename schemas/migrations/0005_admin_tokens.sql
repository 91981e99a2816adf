-- Admin tokens with scopes (services/api/auth.py): minted by `POST /v1/admin/tokens`, shown once,
-- stored only as the SHA-256 of the secret. Revoked tokens stay (answer 403, kept for audit).
--
-- The project's rule is that every table leads its key with account_id. An admin token belongs to
-- no account (it acts across all of them), so the key leads with a constant scope column instead:
-- `tenant` is always '*' ("every account"), which keeps the key's shape uniform with the other
-- tables and leaves room for account-bound tokens later without changing the key.
CREATE TABLE admin_tokens (
    tenant        text        NOT NULL DEFAULT '*' CHECK (tenant = '*'),
    token_id      text        NOT NULL,
    name          text        NOT NULL,
    secret_sha256 text        NOT NULL,
    scopes        text[]      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    PRIMARY KEY (tenant, token_id),
    UNIQUE (tenant, secret_sha256)
);
