"""The user's path: `creditledger serve` and `creditledger demo` as processes, checked over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.demo import DEMO_ACCOUNTS, expected_outcome, usage_events
from services.platform.settings import Settings
from tests.pipeline import wait_until

pytestmark = pytest.mark.e2e
PROCESS_DEADLINE_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_env(settings: Settings, api_port: int) -> dict[str, str]:
    fields = ("kafka_bootstrap", "database_url", "admin_token", "usage_topic", "commands_topic",
              "ledger_topic", "alerts_topic", "consumer_group", "projector_group")  # fmt: skip
    env = {f"CREDITLEDGER_{name.upper()}": str(getattr(settings, name)) for name in fields}
    return {**os.environ, **env, "CREDITLEDGER_API_PORT": str(api_port)}


@pytest.fixture
def served(namespace: Settings, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    port = free_port()
    env = process_env(namespace, port)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve"], env=env, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        yield env, url
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=PROCESS_DEADLINE_S)
        assert exit_code == 0, log_path.read_text()[-3000:]


async def test_demo_balances_match_its_arithmetic_over_http(
    served: tuple[dict[str, str], str],
) -> None:
    env, url = served

    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def api_ready() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(api_ready, "the API to answer /healthz", PROCESS_DEADLINE_S)
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "demo", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out_bytes, err_bytes = await asyncio.wait_for(demo.communicate(), PROCESS_DEADLINE_S)
    stdout = out_bytes.decode()
    assert demo.returncode == 0, stdout + err_bytes.decode()[-3000:]
    admin = {"Authorization": f"Bearer {env['CREDITLEDGER_ADMIN_TOKEN']}"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for account in DEMO_ACCOUNTS:
            expected = expected_outcome(account, usage_events(account))
            assert f"{account.account_id}" in stdout
            key = await http.post(f"/v1/admin/accounts/{account.account_id}/keys", headers=admin)
            assert key.status_code == 201
            secret = key.json()["secret"]
            response = await http.get("/v1/credits/balance", headers={"x-api-key": secret})
            assert response.status_code == 200
            body = response.json()
            assert body["accountId"] == account.account_id
            assert body["balance"] == expected.balance
            assert body["available"] == expected.balance
            assert body["grantedTotal"] == account.grant_credits
            assert body["consumedTotal"] == account.grant_credits - expected.balance
            assert body["ledgerSeq"] == expected.entries
            assert response.headers["X-Credits-Remaining"] == str(expected.balance)
        unauthorised = await http.get("/v1/credits/balance")
        assert unauthorised.status_code == 401
        assert unauthorised.headers["content-type"] == "application/problem+json"
