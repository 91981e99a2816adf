"""`GET /metrics` follows Prometheus's naming: every counter's samples end `_total`, no
`_created` series, the process's own figures (`process_*`) are there, single process and
multiprocess (API workers) alike. The scrape-time figures come from a fake connection here
(tests/integration/test_api_ops.py reads them from Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.api import metrics
from services.api.app import create_app
from services.platform.settings import Settings
from services.writer import metrics as writer_metrics

UNITS = ("_seconds", "_bytes", "_records", "_rows", "_total", "_info")


class FakeConn:
    """Answers the scrape's statements with one row each, shaped as Postgres's."""

    statements: ClassVar[list[str]] = []  # every statement any scrape ran

    async def execute(self, query: str, *args: Any) -> str:
        return "SET"

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self.statements.append(query)
        if "accounts_behind" in query:
            return {
                "accounts_behind": 1, "entries_behind": 2, "entries_behind_max": 2,
                "oldest_unapplied_age": timedelta(seconds=1),
            }  # fmt: skip
        return {"accounts": 3, "entries": 7}

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        self.statements.append(query)
        if query == metrics.DEAD_LETTERS:
            return [{"topic": "credits.usage.v1", "error_code": "malformed-json", "n": 1}]
        if query == metrics.TABLE_ROWS:
            return [{"name": "processed_requests", "n": 10}]
        return [{"topic": "credits.usage.v1", "kafka_partition": 0, "next_offset": 5}]

    @asynccontextmanager
    async def transaction(self, readonly: bool = False) -> AsyncIterator[None]:
        yield


class FakePool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield FakeConn()


async def _scrape() -> str:
    settings = Settings(kafka_bootstrap=None, database_url=None)
    app = create_app(settings, FakePool(), producer=None)  # type: ignore[arg-type]
    writer_metrics.RECORDS.labels("credits.usage.v1").inc(0)  # a labelled child exists
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        await http.get("/healthz")
        await http.get("/nowhere")
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    return answer.text


def _samples(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def test_counters_end_total_and_no_created_series() -> None:
    text = asyncio.run(_scrape())
    families = _samples(text)
    counters = {name: samples for name, (kind, samples) in families.items() if kind == "counter"}
    for expected in (
        "creditledger_http_requests", "creditledger_ledger_entries",
        "creditledger_dead_letters", "creditledger_writer_usage_events",
        "creditledger_writer_records", "creditledger_misrouted_records",
    ):  # fmt: skip
        assert expected in counters, expected
    assert sum(len(samples) for samples in counters.values()) > 5
    for name, samples in counters.items():  # a labelled counter never counted has no sample
        assert all(s.name == f"{name}_total" for s in samples), name
    assert "_created" not in text
    assert "creditledger_ledger_entries_total 7.0" in text
    assert 'creditledger_postgres_table_estimated_rows{table="processed_requests"} 10.0' in text


def test_no_scrape_reads_a_table_with_a_row_per_event() -> None:
    asyncio.run(_scrape())
    assert FakeConn.statements
    for statement in FakeConn.statements:
        for table in ("processed_requests", "processed_commands", "ledger_entries", "outbox"):
            assert f"FROM {table}" not in statement, statement


def test_gauges_name_their_unit_or_what_they_count() -> None:
    families = _samples(asyncio.run(_scrape()))
    for name, (kind, _) in families.items():
        if name.startswith("creditledger_") and kind == "gauge":
            assert not name.endswith("_total"), name  # a running total is a counter
    assert families["creditledger_scrape_ok"][1][0].value == 1  # the fake answered
    for name in ("creditledger_http_request_duration_seconds",
                 "creditledger_writer_batch_duration_seconds",
                 "creditledger_projection_lag_seconds"):  # fmt: skip
        assert name in families and name.endswith(UNITS), name


def test_process_metrics_are_served() -> None:
    families = _samples(asyncio.run(_scrape()))
    for name in ("process_resident_memory_bytes", "process_cpu_seconds", "python_info"):
        assert name in families, name


def test_multiprocess_mode_serves_process_metrics_without_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = metrics._counted_here(None).decode()
    families = _samples(text)
    assert "process_resident_memory_bytes" in families
    assert "_created" not in text
