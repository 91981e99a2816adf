"""`creditledger projections rebuild`: every read model computed afresh from the ledger into
shadow tables while the live ones keep serving, then swapped in atomically. Resumable.

1. Start: note the projector's stored Kafka offsets (O), create empty shadow tables (with the
   live tables' storage parameters), plan the chunks of accounts (`rebuild_chunks.py`).
2. Compute the models chunk by chunk (a range of account ids; two chunks at a time), set-based
   in SQL: one statement over the chunk's ledger rows (`rebuild_groups.py`), in one transaction
   with the mark that the chunk is done, so a rebuild that dies resumes with the chunks left
   (with the same O).
   The SQL states the projector's pure apply rules (`projections/*/apply.py`) as aggregates;
   `creditledger projections audit` folds the ledger with those very functions and finds any
   difference (tests/integration/test_projections.py runs it after a rebuild).
3. Swap, in one transaction: the shadows replace the live tables (readers wait for the renames,
   then read the new rows; they never see an empty model), the ledger-derived `credits` of
   `endpoint_usage` are replaced in place (its traffic columns come from the usage events, not
   the ledger), and the projector's offsets go back to O.
Why the rewind is enough for the projector's models: an entry the rebuild missed was committed
after O was noted, so the outbox published it after O: the projector reads it again from O, and
entries the rebuild already holds are at or below the new checkpoints, which makes them no-ops.
Endpoint usage is the writer's (credits written with the entries), and no projector replays it:
the swap adds the credits of every entry above what the shadow covered for its account (its
`balance_view_rebuild.last_seq`), with the chunks' own SQL of the writer's rule, in one
statement (`ADD_UNCOVERED_CREDITS`). The
swap holds `endpoint_usage`'s lock, so a writer batch commits either before it (its entries are
in that tail) or after it (its upsert adds to the swapped-in figures).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from projections import rebuild_chunks
from projections.grant_entries import GRANTED, SCHEDULED, whole_sql
from projections.rebuild_groups import CALL_DAY, CHUNK_GROUPS, ENDPOINT
from services.platform.postgres import DbConnection

SWAPPED = ("balance_view", "activity_days", "grants_view")
CHUNK_ACCOUNTS = 1000
# For the chunk's transaction only: memory for its aggregates; no JIT (compiling costs more than
# it saves at this size); a consumed_at written without an offset is UTC; and the chunk's
# entries read in primary-key order (account, seq) through the index, which the activity rule's
# window needs: on a heap in time order, a bitmap scan plus a sort measured slower (129k vs
# 176k rows/s on 10M entries).
CHUNK_SETTINGS = """SET LOCAL work_mem = '256MB'; SET LOCAL jit = off; SET LOCAL timezone = 'UTC';
SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off"""
STATE = """
CREATE TABLE IF NOT EXISTS projection_rebuild (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    projector_offsets jsonb  NOT NULL,
    last_account     text    NOT NULL DEFAULT '',
    accounts         bigint  NOT NULL DEFAULT 0,
    entries          bigint  NOT NULL DEFAULT 0
)"""
CREDITS_SHADOW = """
CREATE TABLE endpoint_credits_rebuild (
    account_id text NOT NULL, endpoint text NOT NULL, day date NOT NULL,
    credits bigint NOT NULL, PRIMARY KEY (account_id, endpoint, day)
)"""
# The customer reads' wall (schemas/migrations/0004_rls.sql): LIKE copies neither grants nor
# policies, so each shadow gets them before it replaces the live table.
SECURE_SHADOW = """
GRANT SELECT ON {table} TO creditledger_api;
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON {table} FOR SELECT TO creditledger_api
    USING (account_id = current_setting('creditledger.account_id', true))
"""
# The credits of the entries the shadow does not hold (above its account's last_seq, or of an
# account it has no row for: created after its chunk ran), added where the swap put the shadow's,
# once the shadows are the live tables (the projector waits on their locks until the commit):
# the writer's commits since the chunks read the ledger. The writer's seq finds the accounts (an
# index probe each). Folded in Postgres with the chunks' own expressions (rebuild_groups.py, the
# rule of services/core/usage.py; the swap sets UTC as the chunks do), in one statement: the swap
# holds every model's lock meanwhile, and the tail grows with the rebuild's length.
ADD_UNCOVERED_CREDITS = f"""
INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
SELECT account_id, endpoint, day, -sum(delta)
FROM (
    SELECT account_id, delta, day, {ENDPOINT} AS endpoint
    FROM (
        SELECT e.account_id, e.delta, e.metadata, e.metadata ->> 'endpoint' AS endpoint_text,
               {CALL_DAY} AS day
        FROM writer_accounts w
        LEFT JOIN balance_view r USING (account_id)  -- the shadow, swapped in and still locked
        JOIN ledger_entries e ON e.account_id = w.account_id AND e.seq > coalesce(r.last_seq, 0)
        WHERE w.seq > coalesce(r.last_seq, 0) AND e.reason IN ('consume', 'refund')
    ) raw
) calls
WHERE endpoint IS NOT NULL
GROUP BY account_id, endpoint, day
ORDER BY 1, 2, 3
ON CONFLICT (account_id, endpoint, day) DO UPDATE SET
    credits = endpoint_usage.credits + EXCLUDED.credits
"""  # noqa: S608 - constant fragments, no input
REWIND = """
UPDATE kafka_offsets o SET next_offset = LEAST(o.next_offset, (s.value)::bigint)
FROM jsonb_each_text($2::jsonb) AS s(key, value)
WHERE o.consumer = $1 AND o.topic || ':' || o.kafka_partition = s.key
"""

# The next chunk: up to $2 accounts after $1 (a loose index scan on the ledger's primary key);
# `upper` is the chunk's last account, NULL when no account is left.
NEXT_CHUNK = """
WITH RECURSIVE a(account_id, n) AS (
    SELECT (SELECT min(account_id) FROM ledger_entries WHERE account_id > $1), 1
    UNION ALL
    SELECT (SELECT min(account_id) FROM ledger_entries WHERE account_id > a.account_id), a.n + 1
    FROM a WHERE a.account_id IS NOT NULL AND a.n < $2
)
SELECT max(account_id) AS upper, count(account_id) AS accounts FROM a
"""
# A timestamptz as Python's `datetime.isoformat()` writes a UTC datetime (what the projector's
# `grants_json` stores): microseconds only when there are some, offset +00:00.
ISO_UTC = """(to_char({t} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN extract(microseconds FROM {t})::bigint % 1000000 <> 0
            THEN to_char({t} AT TIME ZONE 'UTC', '.US') ELSE '' END || '+00:00')"""
# grants/apply.py and balance/apply.py, through projections/grant_entries.py: the opening
# entry's `granted` is the amount (else its delta), its `scheduled` holds the credit until the
# activation.
GRANTED_AMOUNT = f"coalesce({whole_sql(GRANTED, 'o.metadata')}, o.delta)"
SCHEDULED_AMOUNT = f"coalesce({whole_sql(SCHEDULED, 'o.metadata')}, 0)"
# Every model of a chunk (account_id in ($1, $2]) from one pass over its entries
# (`rebuild_groups.py`: one hash aggregate on the finest key, rolled up per account, bucket and
# day), written into the shadows by data-modifying CTEs.
# The rules are those of the pure apply functions: balance/apply.py, grants/apply.py (a grant's
# opening entry opens the row, `scheduled` until its activation entry when it says so, every
# entry naming the bucket moves `remaining`, `expiry`/`void` close it with nothing left),
# activity/apply.py and services/core/usage.py (consumes and refunds naming an endpoint, net,
# per endpoint and the call's day). The views are every model's checkpoints (last_seq, last_source).
# tests/integration/test_rebuild_shapes.py holds it equal to the fold on hand-built ledgers.
CHUNK_MODELS = f"""
WITH {CHUNK_GROUPS},
grant_rows AS (
    SELECT b.account_id, b.bucket_grant_id AS grant_id, o.bucket_kind AS kind,
           (o.bucket_terms ->> 'priority')::int AS priority, {GRANTED_AMOUNT} AS amount,
           CASE WHEN b.closed_seq IS NULL THEN b.delta ELSE 0 END AS remaining,
           nullif(o.bucket_terms ->> 'effective_at', '')::timestamptz AS effective_at,
           o.bucket_expires_at AS expires_at,
           nullif(o.bucket_terms -> 'applies_to', 'null'::jsonb) AS applies_to, o.source,
           CASE WHEN jsonb_typeof(o.metadata -> 'name') = 'string'
                THEN o.metadata ->> 'name' END AS name,
           CASE c.reason WHEN 'expiry' THEN 'expired' WHEN 'void' THEN 'voided'
                ELSE CASE WHEN s.scheduled > 0 THEN 'scheduled' ELSE 'active' END END AS state,
           s.scheduled,
           b.granted_seq, b.closed_seq, o.occurred_at AS granted_at
    FROM per_bucket b
    CROSS JOIN LATERAL (
        SELECT * FROM ledger_entries o
        WHERE o.account_id = b.account_id AND o.seq = b.granted_seq LIMIT 1
    ) o
    CROSS JOIN LATERAL (  -- credit still scheduled: opened so and never activated since
        SELECT CASE WHEN b.activated_seq > b.granted_seq THEN 0 ELSE {SCHEDULED_AMOUNT} END
                   AS scheduled
    ) s
    LEFT JOIN LATERAL (
        SELECT reason FROM ledger_entries c
        WHERE c.account_id = b.account_id AND c.seq = b.closed_seq LIMIT 1
    ) c ON true
),
grants_written AS (
    INSERT INTO grants_view_rebuild (account_id, grant_id, kind, priority, amount, remaining,
                                     effective_at, expires_at, applies_to, source, name, state,
                                     granted_seq, closed_seq, granted_at)
    SELECT account_id, grant_id, kind, priority, amount, remaining, effective_at, expires_at,
           applies_to, source, name, state, granted_seq, closed_seq, granted_at
    FROM grant_rows
),
buckets AS (
    SELECT account_id, jsonb_object_agg(grant_id, jsonb_build_object(
               'kind', kind, 'amount', amount, 'balance', remaining,
               'expires_at', {ISO_UTC.format(t="expires_at")},
               'closed', state IN ('expired', 'voided'), 'scheduled', scheduled)) AS grants
    FROM grant_rows GROUP BY account_id
),
last AS (
    SELECT a.*, l.last_source, l.last_updated
    FROM per_account a CROSS JOIN LATERAL (
        SELECT source AS last_source, recorded_at AS last_updated FROM ledger_entries l
        WHERE l.account_id = a.account_id AND l.seq = a.last_seq LIMIT 1
    ) l
),
views_written AS (
    INSERT INTO balance_view_rebuild (account_id, last_seq, balance, reserved, granted_total,
                                      consumed_total, grants, last_updated, last_source)
    SELECT l.account_id, l.last_seq, l.delta, l.reserved, l.granted_total, l.consumed_total,
           coalesce(b.grants, '{{}}'::jsonb), l.last_updated, l.last_source
    FROM last l LEFT JOIN buckets b USING (account_id)
),
days_written AS (
    INSERT INTO activity_days_rebuild (account_id, day, scans, credits, refunds)
    SELECT account_id, day, sum(scans), -sum(delta), sum(refunds)
    FROM per_day WHERE in_activity GROUP BY account_id, day
),
credits_written AS (
    INSERT INTO endpoint_credits_rebuild (account_id, endpoint, day, credits)
    SELECT account_id, endpoint, day, -sum(delta)
    FROM per_day WHERE endpoint IS NOT NULL GROUP BY account_id, endpoint, day
)
SELECT count(*) AS accounts, coalesce(sum(entries), 0)::bigint AS entries FROM per_account
"""  # noqa: S608 - constant fragments, no input


@dataclass
class RebuildReport:
    accounts: int
    entries: int
    seconds: float
    resumed_from: str

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int], None]


async def rebuild(
    pool: asyncpg.Pool,
    projector_group: str,
    progress: Progress = lambda accounts, entries: None,
    chunk_accounts: int = CHUNK_ACCOUNTS,
    stop_after_chunks: int | None = None,  # for tests of resumption: do this many, then stop
    concurrency: int = rebuild_chunks.CONCURRENCY,
) -> RebuildReport | None:
    """Rebuild and swap; None when stopped early by `stop_after_chunks` (resumable)."""
    assert chunk_accounts >= 1 and concurrency >= 1
    started = time.monotonic()
    resumed_from, todo = await _start(pool, projector_group, chunk_accounts)
    stopping = stop_after_chunks is not None and len(todo) >= stop_after_chunks
    todo = todo[:stop_after_chunks]
    totals = [0, 0]  # accounts, entries

    async def work() -> None:
        while todo:
            chunk = todo.pop(0)
            async with pool.acquire() as conn, conn.transaction():
                accounts, entries = await _chunk(conn, chunk)
            totals[0], totals[1] = totals[0] + accounts, totals[1] + entries
            progress(totals[0], totals[1])

    async with asyncio.TaskGroup() as workers:
        for _ in range(min(concurrency, len(todo))):
            workers.create_task(work())
    if stopping:
        return None
    await _swap(pool, projector_group)
    return RebuildReport(totals[0], totals[1], time.monotonic() - started, resumed_from)


async def _chunk(conn: DbConnection, chunk: rebuild_chunks.Chunk) -> tuple[int, int]:
    """Computes a chunk into the shadows and marks it done; (accounts, entries)."""
    after_account = chunk.after_account
    upper = await rebuild_chunks.upper_of(conn, chunk)
    if upper is None:
        await rebuild_chunks.mark_done(conn, chunk, None, 0, 0)
        return 0, 0
    await conn.execute(CHUNK_SETTINGS)
    counted = await conn.fetchrow(CHUNK_MODELS, after_account, upper)
    assert counted is not None
    accounts, entries = int(counted["accounts"]), int(counted["entries"])
    await rebuild_chunks.mark_done(conn, chunk, upper, accounts, entries)
    return accounts, entries


async def _start(
    pool: asyncpg.Pool, projector_group: str, chunk_accounts: int
) -> tuple[str, list[rebuild_chunks.Chunk]]:
    """Resume a rebuild in progress, or begin one; returns where the chunks done reach and the
    chunks left."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(STATE)
        row = await conn.fetchrow("SELECT last_account FROM projection_rebuild")
        if row is None:
            await _begin(conn, projector_group)
            await rebuild_chunks.plan(conn, "", NEXT_CHUNK, chunk_accounts)
        elif not await rebuild_chunks.planned(conn):  # begun before chunks were planned
            await rebuild_chunks.plan(conn, str(row["last_account"]), NEXT_CHUNK, chunk_accounts)
        return await rebuild_chunks.pending(conn)


async def _begin(conn: DbConnection, projector_group: str) -> None:
    """Notes the projector's offsets and creates the empty shadows."""
    offsets = {
        f"{r['topic']}:{r['kafka_partition']}": r["next_offset"]
        for r in await conn.fetch(
            "SELECT * FROM kafka_offsets WHERE consumer = $1", projector_group
        )
    }
    for table in SWAPPED:
        await conn.execute(f"DROP TABLE IF EXISTS {table}_rebuild")
        await conn.execute(f"CREATE TABLE {table}_rebuild (LIKE {table} INCLUDING ALL)")
        await conn.execute(SECURE_SHADOW.format(table=f"{table}_rebuild"))
        await _keep_storage(conn, table, f"{table}_rebuild")
    await conn.execute("DROP TABLE IF EXISTS endpoint_credits_rebuild")
    await conn.execute(CREDITS_SHADOW)
    await conn.execute("INSERT INTO projection_rebuild (projector_offsets) VALUES ($1)", offsets)


async def _keep_storage(conn: DbConnection, table: str, shadow: str) -> None:
    """The live table's storage parameters on its shadow (LIKE copies none of them): the
    fillfactor that leaves room for HOT updates (migration 0011) must survive a swap."""
    options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE oid = $1::regclass", table)
    if options:
        await conn.execute(f"ALTER TABLE {shadow} SET ({', '.join(options)})")


async def _swap(pool: asyncpg.Pool, projector_group: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        offsets = await conn.fetchval("SELECT projector_offsets FROM projection_rebuild")
        await conn.execute("SET LOCAL timezone = 'UTC'")  # ADD_UNCOVERED_CREDITS's days
        await conn.execute(
            f"LOCK TABLE {', '.join(SWAPPED)}, endpoint_usage IN ACCESS EXCLUSIVE MODE"
        )
        for table in SWAPPED:
            await conn.execute(f"ALTER TABLE {table} RENAME TO {table}_replaced")
            await conn.execute(f"ALTER TABLE {table}_rebuild RENAME TO {table}")
            await conn.execute(f"DROP TABLE {table}_replaced")
        await conn.execute("UPDATE endpoint_usage SET credits = 0 WHERE credits <> 0")
        await conn.execute(
            """INSERT INTO endpoint_usage (account_id, endpoint, day, credits)
               SELECT account_id, endpoint, day, credits FROM endpoint_credits_rebuild
               ON CONFLICT (account_id, endpoint, day) DO UPDATE SET credits = EXCLUDED.credits"""
        )
        await conn.execute("DROP TABLE endpoint_credits_rebuild")
        await conn.execute(ADD_UNCOVERED_CREDITS)  # the writer's entries since the shadow's
        await conn.execute(REWIND, projector_group, offsets)  # the jsonb codec encodes it
        await conn.execute("DROP TABLE projection_rebuild")
        await conn.execute("DROP TABLE projection_rebuild_chunks")
