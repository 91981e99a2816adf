"""A/B bench for migration 0021, not collected (run it by path: `pytest -q -s
tests/integration/bench_hot_columns.py`): the writer's save of 3,300 one-bucket accounts after one
usage event each, before (the whole snapshot, the statement as it was) and after (hot columns,
snapshot skipped), alternating on one connection of the test stack's Postgres; the Python cost of
building the statement's parameters; the API's decode of one row. CPU, not wall time: the
backend's own CPU from /proc when the server runs on this machine, the process's for Python."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.api.reads.balance import StoredState, stored_state
from services.core.model import AccountState, Bucket, BucketKind
from services.core.snapshot import bucket_remaining, state_from_json, state_to_json
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.writer import store

pytestmark = pytest.mark.integration
ACCOUNTS = 3300  # a batch at the bench's 10,000-account ingest
ROUNDS = 12
AT = datetime(2026, 1, 1, tzinfo=UTC)
SAVE_BEFORE_0021 = """
WITH saved AS (
    UPDATE writer_accounts w SET seq = s.seq, balance = s.balance, snapshot = s.snapshot::jsonb,
           next_due_at = s.next_due_at, updated_at = now()
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[])
         AS s(account_id, seq, balance, snapshot, next_due_at)
    WHERE w.account_id = s.account_id
    RETURNING w.xmin::text AS version
)
SELECT min(version) AS low, max(version) AS high FROM saved
"""
Columns = tuple[list[Any], ...]


def loaded_states() -> list[AccountState]:
    return [
        AccountState(
            f"acct_{i:06d}", seq=1, balance=1000,
            buckets=(Bucket(f"grant_{i:06d}", BucketKind.PURCHASED, 40, AT, None, 1, 1000,
                            granted=1000, source="stripe:pi_123"),),
            granted_total=1000,
        )
        for i in range(ACCOUNTS)
    ]  # fmt: skip


def after_usage(state: AccountState, credits: int) -> AccountState:
    bucket = replace(state.buckets[0], remaining=state.buckets[0].remaining - credits)
    return replace(
        state, seq=state.seq + 1, balance=state.balance - credits, buckets=(bucket,),
        consumed_total=state.consumed_total + credits,
    )  # fmt: skip


def columns_before(states: list[AccountState]) -> Columns:
    return (
        [s.account_id for s in states], [s.seq for s in states], [s.balance for s in states],
        [store._snapshot_text(s) for s in states], [s.next_due_at() for s in states],
    )  # fmt: skip


def stored_state_before(account_id: str, row: dict[str, Any]) -> StoredState:
    state = state_from_json(account_id, row["seq"], row["balance"], row["snapshot"], {})
    return StoredState(state, row["updated_at"])


def python_us_per_account(build: Callable[[], object]) -> float:
    samples = []
    for _ in range(20):
        started = time.process_time()
        build()
        samples.append((time.process_time() - started) / ACCOUNTS * 1e6)
    return statistics.median(samples)


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_bench(namespace: Settings) -> None:
    assert namespace.database_url
    pool = await create_pool(namespace.database_url)
    loaded = loaded_states()
    by_id = {s.account_id: s for s in loaded}
    variants: dict[str, tuple[str, Callable[[list[AccountState]], Columns]]] = {
        "before": (SAVE_BEFORE_0021, columns_before),
        "after": (store.SAVE_ACCOUNTS, lambda saved: store._save_columns(by_id, saved)),
        "after, every cold part changed": (
            store.SAVE_ACCOUNTS, lambda saved: store._save_columns({}, saved)
        ),
    }  # fmt: skip
    statement_ms: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    async with pool.acquire() as conn:
        await conn.execute(store.CREATE_ACCOUNTS, list(by_id))
        await conn.fetchrow(SAVE_BEFORE_0021, *columns_before(loaded))
        await conn.execute("VACUUM ANALYZE writer_accounts")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        backend_cpu_s(pid)  # raises when the server runs elsewhere: no backend CPU to read
        for round_ in range(ROUNDS):
            for name, (sql, columns) in variants.items():
                params = columns([after_usage(s, 1 + round_) for s in loaded])
                async with conn.transaction():
                    cpu, wall = backend_cpu_s(pid), time.perf_counter()
                    await conn.fetchrow(sql, *params)
                    wall, cpu = time.perf_counter() - wall, backend_cpu_s(pid) - cpu
                statement_ms[name].append((cpu * 1e3, wall * 1e3))
                await conn.execute("VACUUM writer_accounts")
    await pool.close()
    for name, samples in statement_ms.items():
        cpu_ms = sum(c for c, _ in samples) / ROUNDS  # /proc counts in ticks: the mean of many
        wall_ms = statistics.median(w for _, w in samples)
        print(f"SAVE {name}: backend CPU {cpu_ms:.1f} ms ({cpu_ms / ACCOUNTS * 1e3:.1f} us per"
              f" account), wall median {wall_ms:.1f} ms")  # fmt: skip
    saved = [after_usage(s, 1) for s in loaded]
    for _ in range(3):
        for name, (_, columns) in variants.items():
            us = python_us_per_account(lambda columns=columns: columns(saved))  # type: ignore[misc]
            print(f"parameters {name}: {us:.2f} us per account")
    state = saved[0]
    before = {"seq": state.seq, "balance": state.balance, "snapshot": state_to_json(state),
              "updated_at": AT}  # fmt: skip
    after = {**before, "granted_total": state.granted_total, "consumed_total": state.consumed_total,
             "bucket_remaining": bucket_remaining(state)}  # fmt: skip
    decoders: dict[str, tuple[Callable[[str, Any], StoredState], dict[str, Any]]] = {
        "before": (stored_state_before, before), "after": (stored_state, after),
    }  # fmt: skip
    for _ in range(3):
        for name, (decode, row) in decoders.items():
            started = time.process_time()
            for _ in range(20_000):
                decode("acct", row)
            us = (time.process_time() - started) / 20_000 * 1e6
            print(f"API stored_state {name}: {us:.2f} us")
