"""The command line against a real Postgres and a Kafka that is not there: one line, exit 4."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from services.cli import base
from services.platform.settings import Settings
from tests.chaos.world import settings_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT),
           "CREDITLEDGER_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_reprice_without_kafka_is_one_line_and_exit_4(
    namespace: Settings, tmp_path: Path
) -> None:
    book = tmp_path / "book.json"
    book.write_text(json.dumps({"default_credits": 1, "prices": {}}))
    code, out, err = await _cli(
        namespace, "reprice", "--price-book", str(book), "--from", "2026-11-01",
        "--to", "2026-11-02", "--output", str(tmp_path / "report.csv"),
    )  # fmt: skip
    assert code == base.KAFKA_UNREACHABLE, err
    assert err.strip().splitlines() == [err.strip()], err  # one line, no traceback, no log
    assert err.startswith("creditledger: error: Kafka at 127.0.0.1:")
    assert "CREDITLEDGER_KAFKA_BOOTSTRAP" in err and out == ""
    assert not (tmp_path / "report.csv").exists()


async def test_a_balance_with_no_entry_is_exit_5(namespace: Settings) -> None:
    code, out, err = await _cli(namespace, "balance", "acct_nobody", "--as-of", "2026-11-21")
    assert (code, out) == (base.NOT_FOUND, ""), err
    assert err.strip() == (
        "creditledger: error: acct_nobody: no ledger entry at or before 2026-11-21T00:00:00+00:00"
    )
