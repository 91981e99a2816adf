"""The writer's SQL: load a batch's accounts, lineage and seen ids, then write its plan. Each
function is one round trip whatever the batch size (unnest arrays in, COPY for appends)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.core.evolve import consumption_after
from services.core.model import (
    AccountState,
    BucketKind,
    Consumption,
    EntryReason,
    LedgerEntry,
    entry_id_of,
)
from services.core.snapshot import (
    bucket_remaining,
    same_cold_part,
    state_from_json,
    state_to_doc,
    state_to_json,
)
from services.platform.json_exact import loads_exact
from services.platform.postgres import DbConnection
from services.platform.request_entries import REQUEST_ENTRIES
from services.platform.settings import dead_letter_topic
from services.writer.decoding import IdKind
from services.writer.outbox import PACK_MAX_MESSAGES, pack
from services.writer.plan import BatchPlan, DeadLetter, Forward, SeenKey
from services.writer.state_cache import StateCache
from services.writer.wire import alert_to_json_bytes, entry_to_json_bytes, grant_terms

# Lock first, create only what is missing: an INSERT .. ON CONFLICT DO NOTHING over every
# account of every batch doubled the lock's cost (17 vs 9 ms for 3,300 accounts), and nearly
# every batch finds its accounts already there.
LOCK_ACCOUNTS = """
SELECT w.account_id, w.seq, w.balance, w.xmin::text AS version,
       CASE WHEN w.xmin::text = k.version THEN NULL ELSE w.snapshot::text END AS snapshot,
       CASE WHEN w.xmin::text = k.version THEN NULL ELSE w.bucket_remaining::text END
         AS bucket_remaining,
       w.granted_total, w.consumed_total
FROM writer_accounts w JOIN unnest($1::text[], $2::text[]) AS k(account_id, version)
  USING (account_id)
ORDER BY w.account_id FOR UPDATE OF w
"""

CREATE_ACCOUNTS = """
INSERT INTO writer_accounts (account_id) SELECT unnest($1::text[]) ORDER BY 1
ON CONFLICT (account_id) DO NOTHING
"""

# The requests' consume and refund entries, in seq order (services/platform/request_entries.py).
LOAD_LINEAGE = f"""
SELECT e.account_id, e.seq, e.delta, e.balance_after, e.reason, e.source, e.bucket_grant_id,
       e.bucket_kind, e.metadata, e.occurred_at, e.recorded_at
FROM ({REQUEST_ENTRIES}) e
ORDER BY e.account_id, e.seq
"""  # noqa: S608 - constant fragments, no input

LOAD_SEEN = """
SELECT 'request' AS kind, p.account_id, p.request_id AS id, p.payload_sha256
FROM processed_requests p
JOIN unnest($1::text[], $2::text[]) AS k(account_id, id)
  ON p.account_id = k.account_id AND p.request_id = k.id
UNION ALL
SELECT 'command', c.account_id, c.command_id, c.payload_sha256
FROM processed_commands c
JOIN unnest($3::text[], $4::text[]) AS k(account_id, id)
  ON c.account_id = k.account_id AND c.command_id = k.id
"""

# Returns the version (xmin) the rows now carry: the same for all, this transaction's id. Per
# account either the hot columns (the snapshot NULL: kept as it is) or the whole snapshot (the
# hot columns NULL: it holds them), migration 0021 and `_save_columns`.
SAVE_ACCOUNTS = """
WITH saved AS (
    UPDATE writer_accounts w SET seq = s.seq, balance = s.balance,
           snapshot = COALESCE(s.snapshot::jsonb, w.snapshot),
           granted_total = s.granted_total, consumed_total = s.consumed_total,
           bucket_remaining = s.bucket_remaining::jsonb,
           next_due_at = s.next_due_at, updated_at = now()
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[],
                $6::bigint[], $7::bigint[], $8::text[])
         AS s(account_id, seq, balance, snapshot, next_due_at, granted_total, consumed_total,
              bucket_remaining)
    WHERE w.account_id = s.account_id
    RETURNING w.xmin::text AS version
)
SELECT min(version) AS low, max(version) AS high FROM saved
"""

# The writer owns the whole row: traffic and credits, current at the batch's commit.
ADD_TRAFFIC = """
INSERT INTO endpoint_usage (account_id, endpoint, day, requests, successful, failed,
                            latency_ms_total, latency_samples, latency_ms_max, credits)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
ORDER BY 1, 2, 3
ON CONFLICT (account_id, endpoint, day) DO UPDATE SET
    requests = endpoint_usage.requests + EXCLUDED.requests,
    successful = endpoint_usage.successful + EXCLUDED.successful,
    failed = endpoint_usage.failed + EXCLUDED.failed,
    latency_ms_total = endpoint_usage.latency_ms_total + EXCLUDED.latency_ms_total,
    latency_samples = endpoint_usage.latency_samples + EXCLUDED.latency_samples,
    latency_ms_max = GREATEST(endpoint_usage.latency_ms_max, EXCLUDED.latency_ms_max),
    credits = endpoint_usage.credits + EXCLUDED.credits
"""

ENTRY_COLUMNS = (
    "account_id", "seq", "entry_id", "delta", "balance_after", "reason", "source",
    "bucket_grant_id", "bucket_kind", "bucket_expires_at", "bucket_terms", "metadata",
    "reserved_delta", "occurred_at", "recorded_at",
)  # fmt: skip

OutboxRow = tuple[str, str, bytes | None, bytes, list[list[str]]]


async def lock_accounts(
    conn: DbConnection,
    account_ids: Iterable[str],
    lineage: Iterable[tuple[str, str]],
    cache: StateCache,
) -> dict[str, AccountState]:
    """Lock and load the accounts, with the consume lineage of the (account, request) pairs; a
    row still at the version `cache` holds for it is not decoded again."""
    wanted = sorted(set(account_ids))
    versions = [cache.version_of(a) for a in wanted]
    rows = await conn.fetch(LOCK_ACCOUNTS, wanted, versions)
    if len(rows) < len(wanted):
        await conn.execute(CREATE_ACCOUNTS, wanted)
        rows = await conn.fetch(LOCK_ACCOUNTS, wanted, versions)
    assert len(rows) == len(wanted), "every account of the batch has a locked row"
    consumptions = await _load_lineage(conn, lineage)
    return {r["account_id"]: _state(r, cache, consumptions.get(r["account_id"])) for r in rows}


def _state(
    row: asyncpg.Record, cache: StateCache, consumptions: dict[str, Consumption] | None
) -> AccountState:
    account_id, seq, balance = row["account_id"], row["seq"], row["balance"]
    if row["snapshot"] is None:  # the row is at the cached version: the cached state is it
        state = cache.get(account_id, row["version"])
        assert state is not None and (state.seq, state.balance) == (seq, balance), account_id
        return replace(state, consumptions=consumptions) if consumptions else state
    snapshot = _snapshot_from_text(row["snapshot"])
    remaining = row["bucket_remaining"]
    return state_from_json(
        account_id, seq, balance, snapshot, consumptions or {},
        row["granted_total"], row["consumed_total"],
        None if remaining is None else _snapshot_from_text(remaining),
    )  # fmt: skip


def _save_columns(
    loaded: Mapping[str, AccountState], states: Sequence[AccountState]
) -> tuple[list[Any], ...]:
    """SAVE_ACCOUNTS's arrays from $1. An account whose cold part is the one the batch loaded
    (`same_cold_part`) gets its hot columns and no snapshot (NULL: kept); any other its whole
    snapshot and NULL hot columns, as the snapshot then holds them: the row reads alone, and
    Postgres parses no remainders it would not need."""
    snapshots: list[str | None] = []
    granted: list[int | None] = []
    consumed: list[int | None] = []
    remaining: list[str | None] = []
    for s in states:
        old = loaded.get(s.account_id)
        if old is not None and same_cold_part(old, s):
            snapshots.append(None)
            granted.append(s.granted_total)
            consumed.append(s.consumed_total)
            remaining.append(_json_text(bucket_remaining(s)))
        else:
            snapshots.append(_snapshot_text(s))
            granted.append(None)
            consumed.append(None)
            remaining.append(None)
    return (
        [s.account_id for s in states], [s.seq for s in states], [s.balance for s in states],
        snapshots, [s.next_due_at() for s in states], granted, consumed, remaining,
    )  # fmt: skip


def _snapshot_text(state: AccountState) -> str:
    """`state_to_json(state)` as JSON text, its instants written by orjson (the same text as
    their `isoformat()`) rather than formatted one by one in Python; orjson refuses integers past
    64 bits, which json.dumps writes exactly."""
    try:
        return orjson.dumps(state_to_doc(state)).decode()
    except TypeError:
        return json.dumps(state_to_json(state), separators=(",", ":"))


def _json_text(value: dict[str, int]) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits
        return json.dumps(value, separators=(",", ":"))


def _snapshot_from_text(text: str) -> dict[str, Any]:
    # At 100,000 accounts nearly every locked row is decoded, the writer's cache being cold.
    loaded = loads_exact(text.encode())
    assert isinstance(loaded, dict)
    return loaded


async def _load_lineage(
    conn: DbConnection, lineage: Iterable[tuple[str, str]]
) -> dict[str, dict[str, Consumption]]:
    pairs = sorted(set(lineage))
    if not pairs:
        return {}
    by_account: dict[str, dict[str, Consumption]] = {}
    rows = await conn.fetch(LOAD_LINEAGE, [a for a, _ in pairs], [r for _, r in pairs])
    for row in rows:
        entry = _lineage_entry(row)
        assert entry.request_id is not None
        account = by_account.setdefault(entry.account_id, {})
        account[entry.request_id] = consumption_after(account.get(entry.request_id), entry)
    return by_account


def _lineage_entry(row: asyncpg.Record) -> LedgerEntry:
    return LedgerEntry(
        account_id=row["account_id"], seq=row["seq"], delta=row["delta"],
        balance_after=row["balance_after"], reason=EntryReason(row["reason"]),
        source=row["source"], bucket_grant_id=row["bucket_grant_id"],
        bucket_kind=BucketKind(row["bucket_kind"]) if row["bucket_kind"] else None,
        metadata=row["metadata"], occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"], request_id=row["source"].split(":", 1)[1],
    )  # fmt: skip


async def load_seen(conn: DbConnection, keys: Iterable[SeenKey]) -> dict[SeenKey, bytes]:
    keys = list(keys)
    requests = [(a, i) for kind, a, i in keys if kind is IdKind.REQUEST]
    commands = [(a, i) for kind, a, i in keys if kind is IdKind.COMMAND]
    rows = await conn.fetch(
        LOAD_SEEN,
        [a for a, _ in requests], [i for _, i in requests],
        [a for a, _ in commands], [i for _, i in commands],
    )  # fmt: skip
    return {(IdKind(r["kind"]), r["account_id"], r["id"]): bytes(r["payload_sha256"]) for r in rows}


async def write_plan(
    conn: DbConnection,
    plan: BatchPlan,
    ledger_topic: str,
    alerts_topic: str,
    at: datetime,
    loaded: Mapping[str, AccountState] | None = None,
) -> str | None:
    """Write the plan; return the version (xmin) its saved account rows carry, if one. `loaded`:
    the states `lock_accounts` gave the batch (none: every snapshot is written)."""
    entry_ids = [entry_id_of(e.account_id, e.seq) for e in plan.entries]  # for row and message
    if plan.entries:
        await conn.copy_records_to_table(
            "ledger_entries",
            records=[_entry_row(e, i) for e, i in zip(plan.entries, entry_ids, strict=True)],
            columns=ENTRY_COLUMNS,
        )
    await _write_processed(conn, plan, at)
    await _write_dead_letters(conn, plan.dead_letters, at)
    await _write_outbox(conn, plan, entry_ids, ledger_topic, alerts_topic)
    await _write_traffic(conn, plan)
    changed = list(plan.states.values())
    if not changed:
        return None
    saved = await conn.fetchrow(SAVE_ACCOUNTS, *_save_columns(loaded or {}, changed))
    assert saved is not None
    low, high = saved["low"], saved["high"]
    return str(low) if low is not None and low == high else None


async def _write_traffic(conn: DbConnection, plan: BatchPlan) -> None:
    if not plan.traffic:
        return
    keys = sorted(plan.traffic)
    rows = [plan.traffic[k] for k in keys]
    await conn.execute(
        ADD_TRAFFIC, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        [t.requests for t in rows], [t.successful for t in rows], [t.failed for t in rows],
        [t.latency_ms_total for t in rows], [t.latency_samples for t in rows],
        [t.latency_ms_max for t in rows], [t.credits for t in rows],
    )  # fmt: skip


async def _write_processed(conn: DbConnection, plan: BatchPlan, at: datetime) -> None:
    requests = [
        (p.account_id, p.idempotency_id, p.payload_sha256, p.first_seq, p.last_seq, at)
        for p in plan.processed
        if p.kind is IdKind.REQUEST
    ]
    commands = [
        (
            p.account_id, p.idempotency_id, p.payload_sha256,
            "rejected" if p.rejection else "applied",
            f"{p.rejection.code}: {p.rejection.detail}" if p.rejection else None, at,
        )
        for p in plan.processed
        if p.kind is IdKind.COMMAND
    ]  # fmt: skip
    if requests:
        await conn.copy_records_to_table(
            "processed_requests",
            records=requests,
            columns=(
                "account_id",
                "request_id",
                "payload_sha256",
                "first_seq",
                "last_seq",
                "recorded_at",
            ),
        )
    if commands:
        await conn.copy_records_to_table(
            "processed_commands",
            records=commands,
            columns=("account_id", "command_id", "payload_sha256", "status", "reason",
                     "recorded_at"),
        )  # fmt: skip


async def _write_dead_letters(conn: DbConnection, dead: Sequence[DeadLetter], at: datetime) -> None:
    if not dead:
        return
    await conn.copy_records_to_table(
        "dead_letters",
        records=[
            (d.account_id, d.record.topic, d.record.partition, d.record.offset, d.code.value,
             d.message, d.record.value, at)
            for d in dead
        ],
        columns=("account_id", "topic", "kafka_partition", "kafka_offset", "error_code",
                 "error_message", "raw_value", "recorded_at"),
    )  # fmt: skip


async def _write_outbox(
    conn: DbConnection, plan: BatchPlan, entry_ids: list[str], ledger_topic: str, alerts_topic: str
) -> None:
    # Ledger and alert messages carry no headers: their rows leave `headers` to its default
    # rather than encode an empty list per entry.
    # Ledger messages go packed, a few thousand to a row (migration 0018, outbox.py), filed
    # under the first message's account; their order in the rows is the entries' order.
    entries = plan.entries
    packed: list[tuple[str, str, bytes, int]] = []
    for start in range(0, len(entries), PACK_MAX_MESSAGES):
        chunk = range(start, min(start + PACK_MAX_MESSAGES, len(entries)))
        messages = [
            (entries[n].account_id.encode(), entry_to_json_bytes(entries[n], entry_ids[n]))
            for n in chunk
        ]
        packed.append((entries[start].account_id, ledger_topic, pack(messages), len(messages)))
    if packed:
        await conn.copy_records_to_table(
            "outbox", records=packed, columns=("account_id", "topic", "value", "packed")
        )
    rows = [
        (a.account_id, alerts_topic, a.account_id.encode(), alert_to_json_bytes(a))
        for a in plan.alerts
    ]
    if rows:
        await conn.copy_records_to_table(
            "outbox", records=rows, columns=("account_id", "topic", "key", "value")
        )
    with_headers = [_dead_letter_outbox_row(d) for d in plan.dead_letters]
    with_headers += [_forward_outbox_row(f) for f in plan.forwards]
    if with_headers:
        await conn.copy_records_to_table(
            "outbox",
            records=with_headers,
            columns=("account_id", "topic", "key", "value", "headers"),
        )


def _forward_outbox_row(forward: Forward) -> OutboxRow:
    """The misrouted record again, on its own topic, keyed by its account id: the relay sends a
    keyed row to the key's murmur2 partition, which is `forward.to`. Value bytes unchanged."""
    record = forward.record
    headers = [[name, base64.b64encode(value).decode()] for name, value in forward.headers()]
    key = forward.account_id.encode()
    return (forward.account_id, record.topic, key, record.value or b"", headers)


def _dead_letter_outbox_row(dead: DeadLetter) -> OutboxRow:
    record = dead.record
    ours = [
        ("dlt.original.topic", record.topic.encode()),
        ("dlt.original.partition", str(record.partition).encode()),
        ("dlt.original.offset", str(record.offset).encode()),
        ("dlt.error.code", dead.code.value.encode()),
        ("dlt.error.message", dead.message.encode()),
    ]
    headers = [[name, base64.b64encode(value).decode()] for name, value in (*record.headers, *ours)]
    topic = dead_letter_topic(record.topic)
    return (dead.account_id, topic, record.key, record.value or b"", headers)


def _entry_row(e: LedgerEntry, entry_id: str) -> tuple[Any, ...]:
    return (
        e.account_id, e.seq, entry_id, e.delta, e.balance_after, e.reason.value, e.source,
        e.bucket_grant_id, e.bucket_kind.value if e.bucket_kind else None,
        e.grant.expires_at if e.grant else None, _terms_json(e), dict(e.metadata), e.reserved_delta,
        e.occurred_at, e.recorded_at,
    )  # fmt: skip


def _terms_json(entry: LedgerEntry) -> dict[str, Any] | None:
    if entry.grant is None:
        return None
    terms = grant_terms(entry.grant)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in terms.items()}
