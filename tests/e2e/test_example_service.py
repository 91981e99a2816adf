"""The example metered service and `creditledger serve` as processes: every credit accounted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.platform.settings import Settings
from tests.e2e.test_run_path import PROCESS_DEADLINE_S, free_port, process_env
from tests.pipeline import wait_until

pytestmark = pytest.mark.e2e
ACCOUNT = "scanner_customer"
SCAN, DEEP = "POST /v1/scanner/scan", "POST /v1/scanner/deep-scan"


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.popen = subprocess.Popen(
                [sys.executable, *args], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGTERM)
        exit_code = self.popen.wait(timeout=PROCESS_DEADLINE_S)
        assert exit_code == 0, self.log_path.read_text()[-3000:]


@pytest.fixture
def served(namespace: Settings, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    port = free_port()
    env = process_env(namespace, port)
    server = Process(["-m", "services.cli", "serve"], env, tmp_path / "serve.log")
    try:
        yield env, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def wait_for_http(url: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:

        async def answers() -> bool:
            try:
                return (await http.get(path)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(answers, f"{url}{path} to answer", PROCESS_DEADLINE_S)


async def test_metered_traffic_is_charged_refunded_and_refused_exactly(
    served: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, api_url = served
    await wait_for_http(api_url, "/healthz")
    admin = {"Authorization": f"Bearer {env['CREDITLEDGER_ADMIN_TOKEN']}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        created = await api.post(
            "/v1/admin/accounts", json={"account_id": ACCOUNT, "name": "Scanner"}, headers=admin
        )
        assert created.status_code == 201, created.text
        key = await api.post(f"/v1/admin/accounts/{ACCOUNT}/keys", headers=admin)
        assert key.status_code == 201, key.text
        customer = {"x-api-key": key.json()["secret"]}
        granted = await api.post(
            f"/v1/admin/accounts/{ACCOUNT}/grants", json={"amount": 10}, headers=admin
        )
        assert granted.status_code == 202, granted.text

        async def balance_is(amount: int) -> bool:
            response = await api.get("/v1/credits/balance", headers=customer)
            return response.status_code == 200 and response.json()["balance"] == amount

        await wait_until(lambda: balance_is(10), "the grant to reach the balance")

    port = free_port()
    service_env = {**env, "EXAMPLE_CREDITS_API": api_url,
                   "EXAMPLE_API_KEYS": json.dumps({ACCOUNT: customer["x-api-key"]}),
                   "EXAMPLE_LOCAL_VIEW_TTL_S": "600"}  # fmt: skip
    service = Process(
        ["-m", "services.producer.example_service", "--port", str(port)],
        service_env,
        tmp_path / "example.log",
    )
    service_url = f"http://127.0.0.1:{port}"
    try:
        await wait_for_http(service_url, "/v1/status")
        caller = {"x-account-id": ACCOUNT}
        async with httpx.AsyncClient(base_url=service_url, timeout=10, headers=caller) as svc:

            async def call(path: str, **kwargs: Any) -> tuple[int, str | None]:
                response = await svc.post(path, **kwargs)
                return response.status_code, response.headers.get("X-Credits-Remaining")

            assert [await call("/v1/scanner/scan") for _ in range(3)] == [
                (200, "9"), (200, "8"), (200, "7"),
            ]  # fmt: skip
            assert await call("/v1/scanner/deep-scan", json={"fail": True}) == (500, "2")
            assert await call("/v1/scanner/deep-scan", content=b"{nope") == (400, "2")
            assert (await svc.get("/v1/status")).headers.get("X-Credits-Remaining") is None
            assert await call("/v1/scanner/deep-scan", json={}) == (200, "2")
            assert [await call("/v1/scanner/scan") for _ in range(2)] == [(200, "1"), (200, "0")]
            refused = await svc.post("/v1/scanner/scan")
            assert refused.status_code == 402
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["available"] == 0
            assert await call("/v1/scanner/deep-scan", json={}) == (402, "0")
    finally:
        service.stop()  # drains the background publishes and flushes the producer

    today = datetime.now(UTC).date().isoformat()
    async with httpx.AsyncClient(base_url=api_url, timeout=10, headers=customer) as api:

        async def all_usage_applied() -> bool:
            rows = (await api.get("/v1/usage")).json()
            return bool(sum(r["requests"] for r in rows.get("data", rows.get("rows", []))) == 8)

        async def ledger_settled() -> bool:
            body = (await api.get("/v1/credits/balance")).json()
            return bool(body["balance"] == 0 and body["consumedTotal"] == 10) and (
                await all_usage_applied()
            )

        await wait_until(ledger_settled, "the usage to reach the ledger and views")

        async def activity_projected() -> bool:
            # Balance and usage are the writer's own state; activity is a projection of the
            # ledger topic, so it can trail them by a projector batch.
            days = (await api.get("/v1/credits/activity")).json()["days"]
            return bool(sum(day["scans"] for day in days) >= 6)

        await wait_until(activity_projected, "the calls to reach the activity projection")
        balance = await api.get("/v1/credits/balance")
        body = balance.json()
        assert (body["balance"], body["available"], body["reserved"]) == (0, 0, 0)
        assert (body["grantedTotal"], body["consumedTotal"]) == (10, 10)
        assert balance.headers["X-Credits-Remaining"] == "0"

        activity = (await api.get("/v1/credits/activity")).json()
        # six charged calls for 10 credits; the 500 and the 400 were consumed and refunded
        assert activity["days"] == [{"day": today, "scans": 6, "credits": 10, "refunds": 10}]

        usage = (await api.get("/v1/usage", params={"group_by": "endpoint"})).json()
        rows = {row["key"]: row for row in usage.get("data", usage.get("rows", []))}
        figures = ("requests", "successfulRequests", "failedRequests", "credits")
        assert [rows[SCAN][f] for f in figures] == [5, 5, 0, 5]
        assert [rows[DEEP][f] for f in figures] == [3, 1, 2, 5]  # 400 and 500 refunded
        assert set(rows) == {SCAN, DEEP}  # the free call and the 402s were never published

        ledger = (await api.get("/v1/credits/ledger", params={"limit": 100})).json()["data"]
        reasons = sorted(entry["reason"] for entry in ledger)
        assert reasons == sorted(["grant"] + ["consume"] * 8 + ["refund"] * 2)
        assert {e["metadata"]["status_code"] for e in ledger if e["reason"] == "refund"} == {
            400, 500,
        }  # fmt: skip
