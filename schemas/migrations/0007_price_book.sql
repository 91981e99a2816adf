-- The price book (contract, "Price book"): versions of credits per call by endpoint, each in
-- force from its effective_at (services/core/pricing.py says which version prices a call).
--
-- The project's rule that every table leads its key with account_id is for account data. The
-- price book is not account data: one book prices every account's calls, and the writer reads
-- it whole (a handful of rows) once per batch. So this is a reference table keyed by its version
-- number alone; sharding the ledger by account would copy it to every shard.
--
-- Append-only: versions are numbered 1, 2, 3… in commit order (schemas/price_book.py takes an
-- exclusive lock to number them) and are immutable; the triggers below refuse any UPDATE, DELETE
-- or TRUNCATE, so a version that priced calls can never change under them.
CREATE TABLE price_book_versions (
    version         integer     NOT NULL PRIMARY KEY CHECK (version > 0),
    effective_at    timestamptz NOT NULL,
    default_credits bigint      NOT NULL CHECK (default_credits >= 0),
    prices          jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(prices) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION price_book_versions_are_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'price book versions are immutable: set a new version instead'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER price_book_versions_no_update_or_delete
    BEFORE UPDATE OR DELETE ON price_book_versions
    FOR EACH ROW EXECUTE FUNCTION price_book_versions_are_immutable();
CREATE TRIGGER price_book_versions_no_truncate
    BEFORE TRUNCATE ON price_book_versions
    FOR EACH STATEMENT EXECUTE FUNCTION price_book_versions_are_immutable();
