"""Balance and check read the writer's account state and ask the core what it can spend.

`writer_accounts` is the state the writer charges from, current at its commit; the figures and
the check are `services.core.spend` applied to it at the read's instant. So what `/check`
allows, what the balance shows and what the writer charges are one rule over one state, and a
grant that became spendable (or a bucket that expired) since the last entry counts as the
writer will count it.

One round trip per read. Row-level security is decided when a statement is planned, by the role
current then, so a `set_config('role', …)` inside the statement that reads would not apply to
it. Instead each API connection gets PL/pgSQL functions of its own session (`pg_temp`, made
on first use: `customer_fetchrow`), whose statements are planned one by one: they switch to the
reader role and the account (`set_config(…, true)`, transaction-local, exactly as
`freshness.AS_CUSTOMER`) and then read the account's row under the RLS policies. Called
outside a transaction, the statement is its own transaction and snapshot, so the role and the
account end with it. `creditledger_key_state` first reads the key (as the owner: the reader
role may not see `api_keys`) and the state only for a key not revoked: the key check and the
read in one statement. `creditledger_states` reads several accounts, each in turn as itself
(the reads of one event-loop pass: reads/state_batches.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from services.api.reads.common import iso
from services.core.model import AccountState
from services.core.snapshot import state_from_json
from services.core.spend import BalanceFigures, figures, quote
from services.platform.postgres import DbConnection

# The row's state: the snapshot, and its hot part beside it (migration 0021), as every statement
# here and in accounts.py returns them (`stored_state`).
ACCOUNT_STATE = """
SELECT seq, balance, snapshot, updated_at, granted_total, consumed_total, bucket_remaining
FROM writer_accounts WHERE account_id = $1
"""
CUSTOMER_FUNCTIONS = """
CREATE OR REPLACE FUNCTION pg_temp.creditledger_state(p_account text)
RETURNS TABLE (seq bigint, balance bigint, snapshot jsonb, updated_at timestamptz,
               granted_total bigint, consumed_total bigint, bucket_remaining jsonb)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('creditledger.account_id', p_account, true),
            set_config('role', 'creditledger_api', true);
    RETURN QUERY SELECT w.seq, w.balance, w.snapshot, w.updated_at,
                        w.granted_total, w.consumed_total, w.bucket_remaining
                 FROM writer_accounts w WHERE w.account_id = p_account;
END
$fn$;
CREATE OR REPLACE FUNCTION pg_temp.creditledger_states(p_accounts text[])
RETURNS TABLE (account text, seq bigint, balance bigint, snapshot jsonb, updated_at timestamptz,
               granted_total bigint, consumed_total bigint, bucket_remaining jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
    a text;
BEGIN
    PERFORM set_config('role', 'creditledger_api', true);
    FOREACH a IN ARRAY p_accounts LOOP
        PERFORM set_config('creditledger.account_id', a, true);
        RETURN QUERY SELECT w.account_id, w.seq, w.balance, w.snapshot, w.updated_at,
                            w.granted_total, w.consumed_total, w.bucket_remaining
                     FROM writer_accounts w WHERE w.account_id = a;
    END LOOP;
END
$fn$;
CREATE OR REPLACE FUNCTION pg_temp.creditledger_key_state(p_secret_sha256 text)
RETURNS TABLE (account_id text, key_id text, revoked_at timestamptz, expires_at timestamptz,
               seq bigint, balance bigint, snapshot jsonb, updated_at timestamptz,
               granted_total bigint, consumed_total bigint, bucket_remaining jsonb)
LANGUAGE plpgsql AS $fn$
DECLARE
    k record;
BEGIN
    SELECT a.account_id, a.key_id, a.revoked_at, a.expires_at INTO k
    FROM api_keys a WHERE a.secret_sha256 = p_secret_sha256;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    account_id := k.account_id;
    key_id := k.key_id;
    revoked_at := k.revoked_at;
    expires_at := k.expires_at;
    IF k.revoked_at IS NULL THEN
        PERFORM set_config('creditledger.account_id', k.account_id, true),
                set_config('role', 'creditledger_api', true);
        SELECT w.seq, w.balance, w.snapshot, w.updated_at,
               w.granted_total, w.consumed_total, w.bucket_remaining
        INTO seq, balance, snapshot, updated_at, granted_total, consumed_total, bucket_remaining
        FROM writer_accounts w WHERE w.account_id = k.account_id;
    END IF;
    RETURN NEXT;
END
$fn$;
"""
STATE_AS_CUSTOMER = "SELECT * FROM pg_temp.creditledger_state($1)"
KEY_AND_STATE = "SELECT * FROM pg_temp.creditledger_key_state($1)"
# Several accounts, each read in turn as itself (reads/state_batches.py).
STATES_AS_CUSTOMER = "SELECT * FROM pg_temp.creditledger_states($1::text[])"
_Result = TypeVar("_Result")
_MISSING_FUNCTION = (asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError)


@dataclass(frozen=True, slots=True)
class StoredState:
    state: AccountState
    last_updated: datetime | None


async def prepare_session(conn: asyncpg.Connection) -> None:
    """The session's functions, made when the connection opens (services/api/pool.py)."""
    await conn.execute(CUSTOMER_FUNCTIONS)


async def customer_fetchrow(pool: asyncpg.Pool, sql: str, *args: object) -> asyncpg.Record | None:
    """One statement's first row (`_on_customer_session`)."""
    return await _on_customer_session(pool, lambda conn: conn.fetchrow(sql, *args))


async def customer_fetch(pool: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    """One statement's rows (`_on_customer_session`)."""
    return await _on_customer_session(pool, lambda conn: conn.fetch(sql, *args))


async def _on_customer_session(
    pool: asyncpg.Pool, statement: Callable[[DbConnection], Awaitable[_Result]]
) -> _Result:
    """One statement on a pooled connection, first making the session's functions when this
    connection has none yet (a new connection, or one whose session was discarded)."""
    async with pool.acquire() as conn:
        try:
            return await statement(conn)
        except _MISSING_FUNCTION:
            await conn.execute(CUSTOMER_FUNCTIONS)
            return await statement(conn)


def stored_state(account_id: str, row: asyncpg.Record | None) -> StoredState:
    """The account from its `writer_accounts` columns (none, or a NULL seq: an unknown account,
    empty)."""
    if row is None or row["seq"] is None:
        return StoredState(AccountState(account_id), None)
    state = state_from_json(
        account_id, row["seq"], row["balance"], row["snapshot"], {},
        row["granted_total"], row["consumed_total"], row["bucket_remaining"],
    )  # fmt: skip
    return StoredState(state, row["updated_at"] if row["seq"] else None)


async def read_state(conn: DbConnection, account_id: str) -> StoredState:
    """The account as the writer last committed it, on a connection already reading as the
    customer (`freshness.fresh_read`)."""
    return stored_state(account_id, await conn.fetchrow(ACCOUNT_STATE, account_id))


async def read_state_as_customer(pool: asyncpg.Pool, account_id: str) -> StoredState:
    """The same in one statement that is its own transaction, as the reader role."""
    return stored_state(account_id, await customer_fetchrow(pool, STATE_AS_CUSTOMER, account_id))


def balance_json(
    account_id: str, figures: BalanceFigures, last_updated: datetime | None
) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "balance": figures.balance,
        "reserved": figures.reserved,
        "available": figures.available,
        "scheduled": figures.scheduled,
        "overage": figures.overage,
        "grantedTotal": figures.granted_total,
        "consumedTotal": figures.consumed_total,
        "buckets": [
            {"kind": k.kind, "amount": k.amount, "balance": k.balance} for k in figures.buckets
        ],
        "resetAt": iso(figures.reset_at),
        "lastUpdated": iso(last_updated),
        # How fresh this read is: the ledger seq of the account's last entry it reflects.
        "ledgerSeq": figures.seq,
    }


def freshness_headers(seq: int, min_seq: int | None) -> dict[str, str]:
    headers = {"X-Ledger-Seq": str(seq)}
    if min_seq is not None and seq < min_seq:
        headers["X-Ledger-Stale"] = "true"
    return headers


def balance_answer(
    account_id: str, stored: StoredState, min_seq: int | None, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """`GET /v1/credits/balance`: the body and the headers."""
    spendable = figures(stored.state, now)
    headers = freshness_headers(spendable.seq, min_seq)
    headers["X-Credits-Remaining"] = str(spendable.available)
    return balance_json(account_id, spendable, stored.last_updated), headers


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    allowed: bool
    body: dict[str, Any]
    headers: dict[str, str]
    detail: str  # when refused: the 402's detail


def check_answer(
    stored: StoredState, cost: int, endpoint: str | None, min_seq: int | None, now: datetime
) -> CheckAnswer:
    """`GET /v1/credits/check`: allowed (200) or not (402, the same body as extra members)."""
    state = stored.state
    call = quote(state, cost, endpoint, now)
    available = call.available_after + cost
    headers = {**freshness_headers(state.seq, min_seq), "X-Credits-Remaining": str(available)}
    body = {"allowed": call.within_limit, "available": available, "cost": cost,
            "endpoint": endpoint, "owed": call.owed, "ledgerSeq": state.seq}  # fmt: skip
    detail = ""
    if not call.within_limit:
        detail = f"{cost} credits needed, {available} available"
        if call.owed:
            detail += f"; {call.owed} would be owed beyond the credit limit"
    return CheckAnswer(call.within_limit, body, headers, detail)
