"""Point-in-time balances and the ledger export, on a ledger the real writer wrote."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.history.as_of import AsOfBalance, BucketKindBalance, balance_as_of, fold_entries
from services.history.export import CSV_COLUMNS, export_ledger
from tests.messages import T0, at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration

ACCOUNT, OTHER = "hist", "hist-other"
GOODWILL = 'goodwill, "sorry"\nsecond line'
FAR_FUTURE = at(60 * 24 * 365)  # the hold must not expire while the test runs


async def build_history(driver: Driver) -> list[list[int]]:
    """Four settled phases, so each has its own recorded_at; returns each phase's seqs."""
    await driver.commands(
        grant(ACCOUNT, 30, "sub", bucket="subscription"),
        grant(ACCOUNT, 100, "paid", bucket="purchased", source="inv_1"),
        grant(OTHER, 10, "o-gift", bucket="gift"),
    )
    await driver.settled()
    await driver.usage(
        usage(ACCOUNT, "r1", credits=40),  # sub -30, paid -10
        usage(ACCOUNT, "r2", status=500, credits=5),  # paid -5, refunded +5
        usage(OTHER, "o1", credits=4),
    )
    await driver.settled()
    await driver.commands(
        command("refund", ACCOUNT, "c-ref", request_id="r1", amount=15, reason="bad scan"),
        command("hold", ACCOUNT, "c-hold", hold_id="h1", amount=20, expires_at=FAR_FUTURE),
        command("adjustment", ACCOUNT, "c-adj", amount=7, reason=GOODWILL),
    )
    await driver.settled()
    # Happened at minute 0.5, before the calls of phase 2, but recorded last.
    await driver.usage(usage(ACCOUNT, "late", credits=3, occurred_at=at(0.5)))
    await driver.settled()
    return [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10], [11]]


async def all_entries(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM ledger_entries ORDER BY account_id, seq")
    return [dict(r) for r in rows]


def figures(result: AsOfBalance | None) -> tuple[Any, ...] | None:
    if result is None:
        return None
    kinds = {b.kind: (b.amount, b.balance) for b in result.buckets}
    return (result.seq, result.balance, result.reserved, result.available, result.granted_total,
            result.consumed_total, kinds, result.unbucketed)  # fmt: skip


async def test_balance_as_of_ledger_time_at_each_phase(driver: Driver) -> None:
    phases = await build_history(driver)
    entries = await driver.entries(ACCOUNT)
    assert [e["seq"] for e in entries] == list(range(1, 12))
    recorded = {e["seq"]: e["recorded_at"] for e in entries}
    ends = [max(recorded[s] for s in phase) for phase in phases]
    starts = [min(recorded[s] for s in phase) for phase in phases]
    assert all(ends[k] < starts[k + 1] for k in range(3)), "phases share a recorded_at"

    expected = [  # hand-computed: (seq, balance, reserved, available, granted, consumed,
        #             {kind: (amount, balance)}, unbucketed)
        (2, 130, 0, 130, 130, 0, {"purchased": (100, 100), "subscription": (30, 30)}, 0),
        (6, 90, 0, 90, 130, 40, {"purchased": (100, 90), "subscription": (30, 0)}, 0),
        (10, 112, 20, 92, 130, 25,
         {"purchased": (100, 100), "subscription": (30, 5), "unbucketed": (7, 7)}, 7),
        (11, 109, 20, 89, 130, 28,
         {"purchased": (100, 100), "subscription": (30, 2), "unbucketed": (7, 7)}, 7),
    ]  # fmt: skip
    for end, want in zip(ends, expected, strict=True):
        assert figures(await balance_as_of(driver.pool, ACCOUNT, end)) == want
    # Between two phases: still the earlier one; before the first entry: nothing.
    midway = starts[1] - (starts[1] - ends[0]) / 2
    assert figures(await balance_as_of(driver.pool, ACCOUNT, midway)) == expected[0]
    before = starts[0] - timedelta(microseconds=1)
    assert await balance_as_of(driver.pool, ACCOUNT, before) is None
    assert await balance_as_of(driver.pool, "nobody", ends[-1]) is None

    # The ledger's own figure agrees, and today's answer equals the balance view.
    last = await balance_as_of(driver.pool, ACCOUNT, ends[-1] + timedelta(days=1))
    assert last is not None
    view = await driver.view(ACCOUNT)
    assert (last.balance, last.reserved, last.granted_total, last.consumed_total) == (
        view["balance"], view["reserved"], view["granted_total"], view["consumed_total"],
    )  # fmt: skip
    assert last.balance == entries[-1]["balance_after"]
    assert last.last_recorded_at == recorded[11]
    # The other account is its own ledger.
    other = await balance_as_of(driver.pool, OTHER, ends[-1])
    assert other is not None
    assert (other.seq, other.balance, other.buckets) == (2, 6, (BucketKindBalance("gift", 10, 6),))


async def test_balance_as_of_event_time_counts_a_late_call_when_it_happened(
    driver: Driver,
) -> None:
    await build_history(driver)
    pool = driver.pool
    assert await balance_as_of(pool, ACCOUNT, T0 - timedelta(seconds=1), by="occurred") is None
    t0 = await balance_as_of(pool, ACCOUNT, T0, by="occurred")
    assert figures(t0) == (2, 130, 0, 130, 130, 0,
                           {"purchased": (100, 100), "subscription": (30, 30)}, 0)  # fmt: skip
    # At minute 0.5 only the late call has happened: 3 from the subscription.
    half = await balance_as_of(pool, ACCOUNT, T0 + timedelta(seconds=30), by="occurred")
    assert half is not None and (half.seq, half.entries) == (11, 3)
    assert figures(half) == (11, 127, 0, 127, 130, 3,
                             {"purchased": (100, 100), "subscription": (30, 27)}, 0)  # fmt: skip
    # Once every event has happened, both axes agree.
    everything = await balance_as_of(pool, ACCOUNT, T0 + timedelta(hours=1), by="occurred")
    recorded = await balance_as_of(pool, ACCOUNT, T0 + timedelta(days=3650))
    assert everything is not None and recorded is not None
    assert figures(everything) == figures(recorded)


async def test_the_sql_and_the_pure_fold_agree_at_every_instant(driver: Driver) -> None:
    await build_history(driver)
    entries = [dict(e) for e in await driver.entries(ACCOUNT)]
    instants: set[datetime] = set()
    for e in entries:
        for name in ("recorded_at", "occurred_at"):
            moment = e[name]
            instants |= {moment - timedelta(microseconds=1), moment, moment + timedelta(seconds=1)}
    for moment in sorted(instants):
        for by in ("recorded", "occurred"):
            in_sql = await balance_as_of(driver.pool, ACCOUNT, moment, by=by)
            assert in_sql == fold_entries(ACCOUNT, entries, moment, by=by), (moment, by)


class CountingBytes(io.BytesIO):
    """Counts the writes, to see the export go out in several batches."""

    writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


def parse_csv(data: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(data, newline=""))
    assert tuple(next(reader)) == CSV_COLUMNS
    return [dict(zip(CSV_COLUMNS, r, strict=True)) for r in reader]


def assert_same_rows(exported: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
    """Exported records (csv strings or jsonl values) against the table's rows, field by field."""
    assert len(exported) == len(rows)
    for got, want in zip(exported, rows, strict=True):
        assert got["id"] == str(want["entry_id"])
        assert (got["account_id"], int(got["seq"])) == (want["account_id"], want["seq"])
        assert int(got["delta"]) == want["delta"]
        assert int(got["balance_after"]) == want["balance_after"]
        assert int(got["reserved_delta"]) == want["reserved_delta"]
        assert (got["reason"], got["source"]) == (want["reason"], want["source"])
        for name in ("occurred_at", "recorded_at"):
            assert got[name].endswith("Z")
            assert datetime.fromisoformat(got[name]) == want[name]
        metadata = got["metadata"]
        assert (json.loads(metadata) if isinstance(metadata, str) else metadata) == want["metadata"]
        kind = got["bucket"]["kind"] if got.get("bucket") else got.get("bucket_kind")
        assert (kind or None) == want["bucket_kind"]


async def test_export_csv_and_jsonl_stream_exactly_the_ledger(driver: Driver) -> None:
    await build_history(driver)
    rows = await all_entries(driver.pool)
    assert len(rows) == 13

    out = CountingBytes()
    written = await export_ledger(driver.pool, out, "csv", batch_rows=3)
    assert written == 13
    assert out.writes >= 5  # 13 rows, 3 a batch: five writes, each bounded
    exported = parse_csv(out.getvalue().decode("utf-8"))
    assert_same_rows(exported, rows)
    assert sum(int(r["delta"]) for r in exported) == sum(r["delta"] for r in rows) == 109 + 6
    adjustment = next(r for r in exported if r["reason"] == "adjustment")
    assert json.loads(adjustment["metadata"]) == {"reason": GOODWILL}
    assert (adjustment["bucket_grant_id"], adjustment["bucket_kind"]) == ("", "")

    text = io.StringIO()
    assert await export_ledger(driver.pool, text, "jsonl", batch_rows=4) == 13
    lines = [json.loads(line) for line in text.getvalue().splitlines()]
    assert_same_rows(lines, rows)
    first = lines[0]
    bucket = first["bucket"]
    assert (bucket["grant_id"], bucket["kind"]) == ("sub", "subscription")
    assert bucket["expires_at"] is None
    assert bucket["priority"] == 10  # the grant's terms travel as on the ledger topic
    assert all(line["bucket"] is None for line in lines if line["reason"] == "adjustment")
    assert lines[1]["source"] == "inv_1"  # the grant's source


async def test_export_respects_the_window_and_the_account(driver: Driver) -> None:
    phases = await build_history(driver)
    rows = await all_entries(driver.pool)
    mine = {r["seq"]: r for r in rows if r["account_id"] == ACCOUNT}
    # Ledger time [just after phase 1, start of phase 3): phase 2 of both accounts (the accounts
    # may sit on different partitions, so phase 1 ends at the later of their grants).
    other_grant = next(r for r in rows if (r["account_id"], r["seq"]) == (OTHER, 1))
    phase_1 = [mine[s]["recorded_at"] for s in phases[0]] + [other_grant["recorded_at"]]
    start = max(phase_1) + timedelta(microseconds=1)
    end = min(mine[s]["recorded_at"] for s in phases[2])
    window = [r for r in rows if start <= r["recorded_at"] < end]
    assert [(r["account_id"], r["seq"]) for r in window] == [
        (ACCOUNT, 3), (ACCOUNT, 4), (ACCOUNT, 5), (ACCOUNT, 6), (OTHER, 2),
    ]  # fmt: skip
    out = io.BytesIO()
    written = await export_ledger(driver.pool, out, "csv", from_=start, to=end, batch_rows=2)
    assert written == 5
    assert_same_rows(parse_csv(out.getvalue().decode()), window)

    # Open-ended, one account.
    out = io.BytesIO()
    written = await export_ledger(driver.pool, out, "jsonl", from_=end, account_id=ACCOUNT)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert written == len(lines) == 5
    assert_same_rows(lines, [mine[s] for s in (7, 8, 9, 10, 11)])

    # Event time: what happened in the first minute, wherever it was recorded.
    out = io.BytesIO()
    written = await export_ledger(
        driver.pool, out, "jsonl", from_=T0, to=T0 + timedelta(minutes=1), by="occurred"
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["account_id"], r["seq"]) for r in lines] == [
        (ACCOUNT, 1), (ACCOUNT, 2), (ACCOUNT, 11), (OTHER, 1),
    ]  # fmt: skip

    # An empty window: a csv header and nothing else.
    out = io.BytesIO()
    assert await export_ledger(driver.pool, out, "csv", to=T0 - timedelta(days=3650)) == 0
    assert parse_csv(out.getvalue().decode()) == []


async def test_export_parquet_writes_one_row_group_per_batch(driver: Driver) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")  # optional: see services/history/README.md
    await build_history(driver)
    rows = await all_entries(driver.pool)
    out = io.BytesIO()
    assert await export_ledger(driver.pool, out, "parquet", batch_rows=5) == 13
    written = parquet.ParquetFile(io.BytesIO(out.getvalue()))
    assert written.metadata.num_row_groups == 3
    table = written.read()
    assert tuple(table.schema.names) == CSV_COLUMNS
    records = table.to_pylist()
    assert [(r["account_id"], r["seq"], r["delta"]) for r in records] == [
        (r["account_id"], r["seq"], r["delta"]) for r in rows
    ]
    assert [r["recorded_at"] for r in records] == [r["recorded_at"] for r in rows]
