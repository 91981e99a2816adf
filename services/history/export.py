"""Ledger export for analysts: csv, jsonl or parquet, streamed so memory stays bounded.

Rows leave in (account_id, seq) order, read through a server-side cursor inside one read-only
REPEATABLE READ transaction: the export is one consistent snapshot of the ledger, and the process
holds at most `batch_rows` rows (plus one formatted batch) whatever the ledger's size.

Field names are the contract's (`credits.ledger.v1`): in jsonl each line is the entry as it
travels on the ledger topic (`bucket` {grant_id, kind, and on grant entries the bucket's terms
expires_at, effective_at, priority, applies_to} or null; `metadata` an object); csv and parquet
are flat (`bucket_grant_id`, `bucket_kind`, `bucket_expires_at`, `metadata` as a JSON string;
the other terms only in jsonl). Times are ISO-8601 UTC with `Z` (parquet: timestamps in UTC).

CSV is opened in spreadsheets, and ledger text comes from producers (sources, endpoints, ids,
metadata): a text cell starting with `=`, `+`, `-`, `@`, tab or CR would run as a formula
(CSV injection), so it gets a leading `'`, which spreadsheets show as text. Numbers are written
as they are; jsonl and parquet keep every text verbatim.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, TextIO, cast

import asyncpg

from services.history.as_of import TimeAxis, iso_utc

ExportFormat = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl", "parquet")
DEFAULT_BATCH_ROWS = 5000

CSV_COLUMNS: tuple[str, ...] = (
    "id", "account_id", "seq", "delta", "balance_after", "reason", "source",
    "bucket_grant_id", "bucket_kind", "bucket_expires_at", "metadata", "reserved_delta",
    "occurred_at", "recorded_at",
)  # fmt: skip

# Time window: [from, to) on the chosen axis ($3: true for occurred_at, else recorded_at).
# Neither time column is indexed: a window reads the whole table (or the account's range of the
# primary key) server side and filters; the order comes from the primary key, so no sort.
EXPORT_ALL_SQL = """
SELECT entry_id, account_id, seq, delta, balance_after, reason, source, bucket_grant_id,
       bucket_kind, bucket_expires_at, bucket_terms, metadata, reserved_delta, occurred_at,
       recorded_at
FROM ledger_entries
WHERE ($1::timestamptz IS NULL
       OR (CASE WHEN $3::boolean THEN occurred_at ELSE recorded_at END) >= $1)
  AND ($2::timestamptz IS NULL
       OR (CASE WHEN $3::boolean THEN occurred_at ELSE recorded_at END) < $2)
ORDER BY account_id, seq
"""
EXPORT_ACCOUNT_SQL = """
SELECT entry_id, account_id, seq, delta, balance_after, reason, source, bucket_grant_id,
       bucket_kind, bucket_expires_at, bucket_terms, metadata, reserved_delta, occurred_at,
       recorded_at
FROM ledger_entries
WHERE account_id = $4
  AND ($1::timestamptz IS NULL
       OR (CASE WHEN $3::boolean THEN occurred_at ELSE recorded_at END) >= $1)
  AND ($2::timestamptz IS NULL
       OR (CASE WHEN $3::boolean THEN occurred_at ELSE recorded_at END) < $2)
ORDER BY account_id, seq
"""


class ExportDependencyError(RuntimeError):
    """A format needs a package that is not installed."""


def entry_record(row: Mapping[str, Any] | asyncpg.Record) -> dict[str, Any]:
    """A `ledger_entries` row in the contract's shape, JSON-ready (what jsonl writes)."""
    grant_id, kind = row["bucket_grant_id"], row["bucket_kind"]
    bucket = None
    if grant_id is not None and kind is not None:
        terms = _json_object(row.get("bucket_terms"))  # set on grant entries only
        bucket = {
            "grant_id": grant_id,
            "kind": kind,
            "expires_at": _iso_or_none(row.get("bucket_expires_at")),
            "effective_at": _iso_or_none(terms.get("effective_at")),
            "priority": terms.get("priority"),
            "applies_to": terms.get("applies_to"),
        }
    return {
        "id": str(row["entry_id"]),
        "account_id": row["account_id"],
        "seq": row["seq"],
        "delta": row["delta"],
        "balance_after": row["balance_after"],
        "reason": row["reason"],
        "source": row["source"],
        "bucket": bucket,
        "metadata": _json_object(row["metadata"]),
        "reserved_delta": row["reserved_delta"],
        "occurred_at": iso_utc(row["occurred_at"]),
        "recorded_at": iso_utc(row["recorded_at"]),
    }


def _json_object(value: Any) -> dict[str, Any]:
    """jsonb arrives decoded through the pool's codec, or as text on a bare connection."""
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def _iso_or_none(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    return iso_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def jsonl_line(record: Mapping[str, Any]) -> str:
    """One line of UTF-8 JSON. U+2028/U+2029 are escaped too: JSON allows them raw, but readers
    that split lines the Unicode way (Python's `splitlines`) would cut the record there."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The contract record flattened for csv and parquet: bucket split, metadata a JSON string."""
    bucket = record["bucket"] or {}
    return {
        "id": record["id"],
        "account_id": record["account_id"],
        "seq": record["seq"],
        "delta": record["delta"],
        "balance_after": record["balance_after"],
        "reason": record["reason"],
        "source": record["source"],
        "bucket_grant_id": bucket.get("grant_id"),
        "bucket_kind": bucket.get("kind"),
        "bucket_expires_at": bucket.get("expires_at"),
        "metadata": json.dumps(record["metadata"], ensure_ascii=False, separators=(",", ":")),
        "reserved_delta": record["reserved_delta"],
        "occurred_at": record["occurred_at"],
        "recorded_at": record["recorded_at"],
    }


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_row(record: Mapping[str, Any]) -> list[Any]:
    """One csv row in CSV_COLUMNS order; None becomes an empty field, formula-like text inert."""
    flat = flat_record(record)
    return ["" if flat[name] is None else _inert(flat[name]) for name in CSV_COLUMNS]


def _inert(value: Any) -> Any:
    """Text a spreadsheet would evaluate, with a leading `'` (see the module docstring)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_text(rows: Sequence[Mapping[str, Any]], header: bool = False) -> str:
    """Records as RFC 4180 csv (CRLF, fields with commas, quotes or newlines quoted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(r) for r in rows)
    return buffer.getvalue()


def _is_binary(out: BinaryIO | TextIO) -> bool:
    if isinstance(out, io.TextIOBase):
        return False
    if isinstance(out, io.RawIOBase | io.BufferedIOBase):
        return True
    return "b" in getattr(out, "mode", "") or not hasattr(out, "encoding")


def _require_pyarrow() -> tuple[Any, Any]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as error:
        raise ExportDependencyError(
            "parquet export needs the 'pyarrow' package, which is not installed: "
            "`pip install pyarrow` (or export as csv or jsonl)"
        ) from error


class _Sink:
    """Writes one formatted batch at a time to `out`."""

    def __init__(self, out: BinaryIO | TextIO, fmt: ExportFormat) -> None:
        self.out, self.fmt, self.binary = out, fmt, _is_binary(out)
        self.header_written = False
        self.parquet_writer: Any = None
        if fmt == "parquet":
            if not self.binary:
                raise ValueError("parquet needs a binary output (open the file with 'wb')")
            self.pa, self.pq = _require_pyarrow()
            self.schema = _parquet_schema(self.pa)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self.fmt == "parquet":
            self._write_parquet(records)
            return
        if self.fmt == "csv":
            text = csv_text(records, header=not self.header_written)
            self.header_written = True
        else:
            text = "".join(jsonl_line(r) for r in records)
        if text:
            self._write_text(text)

    def close(self) -> None:
        if self.fmt == "csv" and not self.header_written:
            self._write_text(csv_text((), header=True))  # an empty export still has a header
        if self.fmt == "parquet":
            if self.parquet_writer is None:
                self._write_parquet((), force=True)
            self.parquet_writer.close()
        self.out.flush()

    def _write_text(self, text: str) -> None:
        if self.binary:
            cast(BinaryIO, self.out).write(text.encode("utf-8"))
        else:
            cast(TextIO, self.out).write(text)

    def _write_parquet(self, records: Sequence[Mapping[str, Any]], force: bool = False) -> None:
        if not records and not force:
            return
        flats = [flat_record(r) for r in records]
        columns = {name: [_parquet_value(name, f[name]) for f in flats] for name in CSV_COLUMNS}
        table = self.pa.Table.from_pydict(columns, schema=self.schema)
        if self.parquet_writer is None:
            self.parquet_writer = self.pq.ParquetWriter(self.out, self.schema)
        self.parquet_writer.write_table(table)  # one row group per batch


_TIME_COLUMNS = frozenset({"bucket_expires_at", "occurred_at", "recorded_at"})
_INT_COLUMNS = frozenset({"seq", "delta", "balance_after", "reserved_delta"})


def _parquet_schema(pa: Any) -> Any:
    def kind(name: str) -> Any:
        if name in _TIME_COLUMNS:
            return pa.timestamp("us", tz="UTC")
        return pa.int64() if name in _INT_COLUMNS else pa.string()

    return pa.schema([pa.field(name, kind(name)) for name in CSV_COLUMNS])


def _parquet_value(name: str, value: Any) -> Any:
    if name in _TIME_COLUMNS and value is not None:
        return datetime.fromisoformat(value).astimezone(UTC)
    return value


async def export_ledger(
    pool: asyncpg.Pool,
    out: BinaryIO | TextIO,
    fmt: ExportFormat = "csv",
    *,
    from_: datetime | None = None,
    to: datetime | None = None,
    account_id: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    by: TimeAxis = "recorded",
    progress: Callable[[int], None] = lambda written: None,  # rows written so far, per batch
) -> int:
    """Stream ledger entries to `out`; return how many were written.

    Window: `from_` <= t < `to` (either open when None) with t the entry's `recorded_at` (ledger
    time, the default) or its `occurred_at` (`by="occurred"`). `account_id` limits the export
    to one account. `out` may be text or binary; parquet needs binary and `pyarrow`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if by not in ("recorded", "occurred"):
        raise ValueError(f"by must be 'recorded' or 'occurred', got {by!r}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    for name, moment in (("from", from_), ("to", to)):
        if moment is not None and moment.utcoffset() is None:
            raise ValueError(f"{name} must carry a UTC offset, got the naive {moment.isoformat()}")
    sink = _Sink(out, fmt)  # fails here, before any query, when a dependency is missing
    args: tuple[Any, ...] = (from_, to, by == "occurred")
    query = EXPORT_ALL_SQL
    if account_id is not None:
        query, args = EXPORT_ACCOUNT_SQL, (*args, account_id)
    written = 0
    batch: list[dict[str, Any]] = []
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        async for row in conn.cursor(query, *args, prefetch=batch_rows):
            batch.append(entry_record(row))
            if len(batch) >= batch_rows:
                sink.write(batch)
                written += len(batch)
                batch = []
                progress(written)
    if batch:
        sink.write(batch)
        written += len(batch)
    sink.close()
    return written
