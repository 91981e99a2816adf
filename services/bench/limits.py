"""The machine's own limits for the same work: kcat reading the topic, psql \\copy loading
ledger-shaped rows, pgbench running the balance SELECT, a plain INSERT … SELECT … GROUP BY."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.bench.workload import ENDPOINT, OCCURRED_AT, account_id
from services.platform.settings import Settings

COPY_COLUMNS = (
    "account_id", "seq", "entry_id", "delta", "balance_after", "reason", "source",
    "bucket_grant_id", "bucket_kind", "metadata", "occurred_at", "recorded_at",
)  # fmt: skip


@dataclass(frozen=True)
class Measured:
    """A rate, or why there is none."""

    per_s: float | None
    seconds: float = 0.0
    note: str = ""


async def _run(argv: list[str], timeout_s: float) -> tuple[float, str]:
    """Runs a command to completion within `timeout_s`; returns (seconds, stdout)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {err.decode()[-500:]}")
    return seconds, out.decode()


async def kcat_read(settings: Settings, topic: str, messages: int, timeout_s: float) -> Measured:
    """`kcat -C -e -o beginning` over the whole topic, output counted, not kept."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        return Measured(None, note="kcat not installed (apt-get install -y kcat)")
    assert settings.kafka_bootstrap is not None
    argv = [kcat, "-C", "-b", settings.kafka_bootstrap, "-t", topic, "-o", "beginning", "-e",
            "-q", "-f", "%o\n"]  # fmt: skip
    seconds, out = await _run(argv, timeout_s)
    read = out.count("\n")
    if read < messages:
        return Measured(None, seconds, f"kcat read {read} of {messages} messages")
    return Measured(read / seconds, seconds)


def _write_ledger_csv(path: Path, rows: int, accounts: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        seqs = [0] * accounts
        metadata = json.dumps({"endpoint": ENDPOINT, "key_id": "key_bench", "status_code": 200})
        for n in range(rows):
            a = n % accounts
            seqs[a] += 1
            writer.writerow((
                account_id(a), seqs[a], uuid.uuid4(), -1, 1_000_000 - seqs[a], "consume",
                f"request:copy-{n}", f"grant-{a}", "purchased", metadata, OCCURRED_AT,
                OCCURRED_AT,
            ))  # fmt: skip


async def psql_copy(
    pool: asyncpg.Pool, settings: Settings, rows: int, accounts: int, timeout_s: float
) -> Measured:
    """`psql \\copy` of `rows` ledger-shaped rows into a scratch table LIKE ledger_entries
    (indexes included). The CSV is written before the clock starts."""
    psql = shutil.which("psql")
    if psql is None:
        return Measured(None, note="psql not installed")
    assert settings.database_url is not None
    await pool.execute("DROP TABLE IF EXISTS bench_copy")
    await pool.execute("CREATE TABLE bench_copy (LIKE ledger_entries INCLUDING ALL)")
    with tempfile.TemporaryDirectory(prefix="creditledger-bench-") as tmp:
        path = Path(tmp) / "ledger.csv"
        await asyncio.to_thread(_write_ledger_csv, path, rows, max(accounts, 1))
        copy = f"\\copy bench_copy ({', '.join(COPY_COLUMNS)}) FROM '{path}' WITH (FORMAT csv)"
        seconds, _ = await _run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", settings.database_url, "-c", copy],
            timeout_s,
        )
    loaded = int(await pool.fetchval("SELECT count(*) FROM bench_copy"))
    await pool.execute("DROP TABLE bench_copy")
    return Measured(loaded / seconds, seconds)


@dataclass(frozen=True)
class Pgbench:
    tps: float | None
    latency_ms: float | None
    note: str = ""


ACCOUNT_EXPR = "('acct_' || lpad(:n::text, 6, '0'))"


def pgbench_script(sql: str, accounts: int, params: dict[int, str]) -> str:
    """A named query with `$1` the account (drawn at random among the first `accounts`) and
    the other `$k` as `params` gives them (SQL literals), for pgbench to run as the API does."""
    text = sql
    for k in sorted(params, reverse=True):  # $10 before $1…
        text = text.replace(f"${k}", params[k])
    text = text.replace("$1", ACCOUNT_EXPR)
    one_line = " ".join(text.split())
    return f"\\set n random(0, {max(accounts, 1) - 1})\n{one_line};\n"


async def pgbench_select(
    settings: Settings, script: str, clients: int, seconds: int, timeout_s: float
) -> Pgbench:
    """`script` (see `pgbench_script`) under pgbench: `clients` connections, `seconds` long."""
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return Pgbench(None, None, "pgbench not installed (postgresql-client)")
    assert settings.database_url is not None
    with tempfile.TemporaryDirectory(prefix="creditledger-pgbench-") as tmp:
        path = Path(tmp) / "select.sql"
        path.write_text(script)
        argv = [pgbench, "-n", "-M", "prepared", "-f", str(path), "-c", str(clients), "-j", "2",
                "-T", str(seconds), settings.database_url]  # fmt: skip
        _, out = await _run(argv, timeout_s)
    tps = re.search(r"tps = ([0-9.]+)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    return Pgbench(
        float(tps.group(1)) if tps else None,
        float(latency.group(1)) if latency else None,
        "" if tps else f"no tps in pgbench output: {out[-300:]}",
    )


GROUP_BY = """
INSERT INTO bench_balance_agg (account_id, last_seq, balance, granted_total, consumed_total,
                               last_updated)
SELECT account_id, max(seq), sum(delta),
       coalesce(sum(delta) FILTER (WHERE reason = 'grant'), 0),
       coalesce(-sum(delta) FILTER (WHERE reason IN ('consume', 'refund')), 0),
       max(recorded_at)
FROM ledger_entries GROUP BY account_id
"""


# Accounts whose rebuilt balance row differs from the plain aggregate (or is missing).
DIFFERING = """
SELECT count(*) FROM bench_balance_agg a LEFT JOIN balance_view v USING (account_id)
WHERE v.account_id IS NULL
   OR (v.last_seq, v.balance, v.granted_total, v.consumed_total)
      <> (a.last_seq, a.balance, a.granted_total, a.consumed_total)
"""


async def group_by_aggregate(pool: asyncpg.Pool) -> tuple[Measured, int]:
    """The balance aggregate as one INSERT … SELECT … GROUP BY into a scratch table; with how
    many accounts of balance_view differ from it."""
    rows = int(await pool.fetchval("SELECT count(*) FROM ledger_entries"))
    await pool.execute("DROP TABLE IF EXISTS bench_balance_agg")
    await pool.execute("CREATE TABLE bench_balance_agg (LIKE balance_view INCLUDING ALL)")
    started = time.monotonic()
    await pool.execute(GROUP_BY)
    seconds = time.monotonic() - started
    differing = int(await pool.fetchval(DIFFERING))
    await pool.execute("DROP TABLE bench_balance_agg")
    return Measured(rows / seconds, seconds), differing
