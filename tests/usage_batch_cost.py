"""What a writer batch and the projector's batch cost Postgres and us, on a real Postgres (the
tests' stack): `python -m tests.usage_batch_cost [ROUNDS]`, from a tree's root (its code is what
is measured, so the same file measures an older tree on PYTHONPATH for an A/B).

Each round is one writer batch of 3,300 usage events over 1,700 accounts (5 % failed calls,
refunded in the same batch; 3 % refunds of an earlier round's call by command), planned and
written as `services/writer/runner.py` does (lock, seen ids, plan, write, in one transaction),
then the projector's transaction over the entries it wrote, decoded from the writer's own
messages. Per round: each side's Postgres statement time (pg_stat_statements, when the server
has it), its backend's CPU (/proc, the server being local) and this process's CPU, per event.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from projections.runner import apply_entries
from schemas.ledger_decode import decode_entry_message
from services.core.pricing import DEFAULT_PRICE_BOOK
from services.platform.postgres import DbConnection, create_pool, migrate
from services.writer import store
from services.writer.decoding import Decoded, decode_command, decode_usage
from services.writer.plan import InputRecord, lineage_keys, plan_batch, seen_keys
from services.writer.state_cache import StateCache
from services.writer.wire import entry_to_json_bytes
from tests.servers import real_servers

ACCOUNTS, EVENTS = 1700, 3300
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
# All the side's statements (COMMIT's WAL flush among them), and its `endpoint_usage` upserts.
STATEMENTS = f"""
SELECT coalesce(sum(total_exec_time), 0) AS ms,
       coalesce(sum(total_exec_time) FILTER (WHERE query ILIKE 'INSERT INTO endpoint_usage%'), 0)
           AS usage_ms
FROM pg_stat_statements WHERE dbid = {THIS_DATABASE} AND query NOT ILIKE '%pg_stat_statements%'
"""  # noqa: S608 - a constant
RESET = f"SELECT pg_stat_statements_reset(0, {THIS_DATABASE}, 0)"


def account(n: int) -> str:
    return f"acct-{n:05d}"


def record(topic: str, offset: int, value: dict[str, Any], decoded: Decoded) -> InputRecord:
    return InputRecord(topic, 0, offset, None, json.dumps(value).encode(), (), T0, decoded)


def grants() -> list[InputRecord]:
    out = []
    for n in range(ACCOUNTS):
        value = {"type": "grant", "command_id": f"g{n}", "account_id": account(n),
                 "occurred_at": T0.isoformat(), "amount": 1_000_000}  # fmt: skip
        decoded = decode_command(None, json.dumps(value).encode())
        assert isinstance(decoded, Decoded)
        out.append(record("commands", n, value, decoded))
    return out


def usage_round(round_no: int) -> list[InputRecord]:
    out = []
    at = T0 + timedelta(hours=round_no)
    for n in range(EVENTS):
        failed = n % 20 == 7
        value = {"request_id": f"r{round_no}-{n}", "account_id": account(n % ACCOUNTS),
                 "key_id": "k", "endpoint": f"POST /v1/e{n % 3}",
                 "status_code": 500 if failed else 200, "latency_ms": n % 97,
                 "occurred_at": at.isoformat(), "credits": 3}  # fmt: skip
        decoded = decode_usage(None, json.dumps(value).encode(), DEFAULT_PRICE_BOOK)
        assert isinstance(decoded, Decoded)
        out.append(record("usage", n, value, decoded))
    if round_no > 0:  # refunds of the previous round's calls, on the day those were made
        for n in range(0, EVENTS, 33):
            if n % 20 == 7:
                continue
            value = {"type": "refund", "command_id": f"rf{round_no}-{n}",
                     "account_id": account(n % ACCOUNTS), "request_id": f"r{round_no - 1}-{n}",
                     "occurred_at": (at + timedelta(days=1)).isoformat(), "amount": 1,
                     "reason": "bench"}  # fmt: skip
            decoded = decode_command(None, json.dumps(value).encode())
            assert isinstance(decoded, Decoded)
            out.append(record("commands", EVENTS + n, value, decoded))
    return out


def backend_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CACHE = StateCache(100_000)  # kept across batches, as the writer's runner keeps it


async def writer_batch(conn: DbConnection, records: Sequence[InputRecord]) -> list[bytes]:
    async with conn.transaction():
        decoded = [r.decoded for r in records if isinstance(r.decoded, Decoded)]
        states = await store.lock_accounts(
            conn, (d.account_id for d in decoded),
            (k for d in decoded for k in lineage_keys(d)), CACHE,
        )  # fmt: skip
        seen = await store.load_seen(conn, (k for d in decoded for k in seen_keys(d)))
        plan = plan_batch(records, states, seen)
        version = await store.write_plan(conn, plan, "ledger", "alerts", datetime.now(UTC))
        await conn.execute("DELETE FROM outbox")  # the relay's work, not measured here
    if version is not None:
        CACHE.put_all(plan.states.values(), version)
    return [entry_to_json_bytes(e) for e in plan.entries]


async def projector_batch(conn: DbConnection, messages: Sequence[bytes]) -> None:
    entries = sorted((decode_entry_message(m) for m in messages), key=lambda e: e.account_id)
    async with conn.transaction():
        await apply_entries(conn, entries)


class Side:
    """One side's connection and what it cost: statement ms, backend CPU s, our CPU s."""

    def __init__(self, conn: DbConnection, stats: asyncpg.Connection | None) -> None:
        self.conn, self.stats = conn, stats
        self.pid = conn.get_server_pid()

    async def measure(self, work: Any) -> tuple[Any, dict[str, float]]:
        """`work`'s result, and what it cost: statement ms (all, the usage upserts'), backend
        and our CPU s."""
        if self.stats is not None:
            await self.stats.execute(RESET)
        backend, ours = backend_cpu_s(self.pid), time.process_time()
        result = await work
        cost = {
            "cpu_s": time.process_time() - ours,
            "backend_cpu_s": backend_cpu_s(self.pid) - backend,
        }
        if self.stats is not None:
            row = await self.stats.fetchrow(STATEMENTS)
            assert row is not None
            cost.update(statement_ms=float(row["ms"]), usage_statement_ms=float(row["usage_ms"]))
        return result, cost


async def run(database_url: str, rounds: int) -> dict[str, Any]:
    await migrate(database_url)
    pool = await create_pool(database_url)
    stats: asyncpg.Connection | None = await asyncpg.connect(database_url)
    assert stats is not None
    try:
        await stats.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await stats.execute(RESET)
    except asyncpg.PostgresError:
        await stats.close()
        stats = None
    try:
        async with pool.acquire() as writer_conn, pool.acquire() as projector_conn:
            writer, projector = Side(writer_conn, stats), Side(projector_conn, stats)
            await projector_batch(projector_conn, await writer_batch(writer_conn, grants()))
            figures: dict[str, list[float]] = {}
            for round_no in range(rounds):
                records = usage_round(round_no)
                messages, writer_cost = await writer.measure(writer_batch(writer_conn, records))
                _, projector_cost = await projector.measure(
                    projector_batch(projector_conn, messages)
                )
                for side, cost in (("writer", writer_cost), ("projector", projector_cost)):
                    for name, value in cost.items():
                        if name.endswith("cpu_s"):
                            name, value = name[:-2] + "us_per_event", value * 1e6 / len(records)
                        figures.setdefault(f"{side}_{name}", []).append(value)
            usage_rows = await pool.fetchrow(
                "SELECT count(*) AS rows, sum(credits) AS credits, sum(requests) AS requests"
                " FROM endpoint_usage"
            )
            assert usage_rows is not None
    finally:
        if stats is not None:
            await stats.close()
        await pool.close()
    warm = {k: v[1:] for k, v in figures.items()}  # the first round fills caches
    return {
        "median": {k: round(statistics.median(v), 1) for k, v in warm.items()},
        "endpoint_usage": dict(usage_rows),
    }


async def main(rounds: int) -> None:
    with real_servers() as servers:
        database = f"usagecost_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(servers.database_url)
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            url = servers.database_url.rsplit("/", 1)[0] + "/" + database
            print(json.dumps(await run(url, rounds), default=str))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6))
