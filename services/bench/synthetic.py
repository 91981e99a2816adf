"""A large ledger made in SQL (not through the pipeline), for the rebuild measurement: per
account one grant (seq 1) and then consumes of 1 credit, interleaved across accounts in the
table the way live traffic lands, with the ledger's indexes built after the load."""

from __future__ import annotations

import asyncpg

from services.bench.workload import ENDPOINT

GRANT = 1_000_000_000
DROP_INDEXES = """
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey;
DROP INDEX ledger_entries_refunds_by_source;
"""
ADD_INDEXES = """
ALTER TABLE ledger_entries ADD PRIMARY KEY (account_id, seq);
CREATE INDEX ledger_entries_refunds_by_source ON ledger_entries (account_id, source)
    WHERE reason = 'refund';
"""
# Entry n (0-based) belongs to account n % $2 at seq n / $2 + 1; seq 1 is the account's grant.
# Times advance 50 ms an entry from 2026-11-01, so accounts have activity on many days.
GENERATE = f"""
INSERT INTO ledger_entries (account_id, seq, entry_id, delta, balance_after, reason, source,
                            bucket_grant_id, bucket_kind, metadata, occurred_at, recorded_at)
SELECT 'acct_' || lpad((n % $2)::text, 6, '0'), n / $2 + 1, gen_random_uuid(),
       CASE WHEN n < $2 THEN {GRANT} ELSE -1 END,
       {GRANT} - n / $2,
       CASE WHEN n < $2 THEN 'grant' ELSE 'consume' END,
       CASE WHEN n < $2 THEN 'command:grant-' || n ELSE 'request:gen-' || n END,
       'g-' || (n % $2), 'purchased',
       CASE WHEN n < $2 THEN '{{"name": "bench"}}'::jsonb
            ELSE '{{"endpoint": "{ENDPOINT}", "key_id": "key_bench", "status_code": 200}}'::jsonb
       END,
       timestamptz '2026-11-01 00:00:00+00' + n * interval '50 milliseconds',
       timestamptz '2026-11-01 00:00:00+00' + n * interval '50 milliseconds'
FROM generate_series(0, $1 - 1) AS n
"""  # noqa: S608 - constants, no input
ANALYZE = "ANALYZE ledger_entries"


async def generate_ledger(pool: asyncpg.Pool, entries: int, accounts: int) -> None:
    """Fills the (empty) ledger of a fresh database with `entries` rows over `accounts`."""
    assert entries >= accounts >= 1
    async with pool.acquire() as conn:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(DROP_INDEXES)
        await conn.execute(GENERATE, entries, accounts)
        await conn.execute(ADD_INDEXES)
        await conn.execute(ANALYZE)
