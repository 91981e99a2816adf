"""The client libraries against a live API: services/client (sync and async) and the TypeScript
SDK in sdk/typescript (built, then its `node --test` suite run against this API).

Writer, projector and the webhook worker run in this process; the API is served by uvicorn on a
free port in this loop. The blocking client therefore runs in a worker thread (it would stop the
loop serving it). Each client makes its own account: key, grants through the admin API, usage
over HTTP ingest, and then checks the balance, the ledger paged by cursor and
`credits_remaining` against the arithmetic of what it sent. The admin endpoints (service tokens,
accounts, webhooks, dashboard sessions, explain, the account reads): test_clients_admin.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from services.api.app import create_app
from services.client import AsyncCreditLedgerClient, CreditLedgerClient, ProblemError
from services.platform.settings import Settings
from services.runtime import running
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
SERVER_START_S = 30.0
DEADLINE_S = 30.0
NPM_INSTALL_S = 600.0
NODE_TESTS_S = 300.0
GRANTS = (40, 50, 60)
TOTAL = sum(GRANTS)
SCAN_CREDITS = 7


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the test's loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HookReceiver:
    """A webhook receiver on 127.0.0.1 answering 200 to every POST; `bodies` what came."""

    bodies: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                length = re.search(r"content-length:\s*(\d+)", head)
                self.bodies.append(await reader.readexactly(int(length[1]) if length else 0))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()


@dataclass(frozen=True)
class LiveApi:
    url: str
    admin_token: str
    hooks: HookReceiver  # a receiver the tests may register as a webhook endpoint


@pytest.fixture
async def live_api(namespace: Settings) -> AsyncIterator[LiveApi]:
    """The API on a free port, with writer, projector and the webhook worker running; webhook
    URLs on 127.0.0.1 allowed (the receiver is local)."""
    settings = namespace.model_copy(
        update={"api_port": free_port(), "webhooks_allow_private": True}  # api_port: ops port
    )
    hooks = HookReceiver()
    hooks.server = await asyncio.start_server(hooks.serve, "127.0.0.1", 0)
    async with running(settings, ("writer", "projector", "webhooks")) as handle:
        app = create_app(settings, handle.pool, handle.producer)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off"
        )
        server = _EmbeddedServer(config)
        serving = asyncio.create_task(server.serve())

        async def started() -> bool:
            if serving.done():
                raise AssertionError("the API server could not start")
            return bool(server.started)

        await wait_until(started, "the API server to start", SERVER_START_S)
        assert settings.admin_token is not None
        try:
            yield LiveApi(f"http://127.0.0.1:{config.port}", settings.admin_token, hooks)
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, SERVER_START_S)
            hooks.server.close()


def scan(account_id: str, credits: int) -> dict[str, object]:
    return {
        "request_id": uuid.uuid4().hex, "account_id": account_id, "key_id": "key_1",
        "endpoint": "POST /v1/scanner/scan", "status_code": 200,
        "occurred_at": datetime.now(UTC).isoformat(), "credits": credits,
    }  # fmt: skip


def sync_scenario(api: LiveApi, account: str) -> None:
    """Everything the blocking client does, in a worker thread."""
    with CreditLedgerClient(api.url, admin_token=api.admin_token, account=account) as admin:
        admin.create_account(account, "Python sync client")
        secret = admin.create_key()["secret"]
        with CreditLedgerClient(api.url, api_key=secret) as customer:
            first = customer.balance()
            assert (first["accountId"], first["balance"]) == (account, 0)
            assert customer.credits_remaining == 0

            for n, amount in enumerate(GRANTS):
                accepted = admin.grant(amount, name=f"pack {n}", source=f"invoice_{n}")
                outcome = admin.wait_for_command(accepted["commandId"], timeout_s=DEADLINE_S)
                assert outcome["status"] == "applied", outcome
            # A retried grant (same Idempotency-Key) is one command, applied once.
            again = [admin.grant(5, idempotency_key="retry-me") for _ in range(2)]
            assert again[0]["commandId"] == again[1]["commandId"]
            admin.wait_for_command(again[0]["commandId"], timeout_s=DEADLINE_S)
            granted = TOTAL + 5
            poll_sync(lambda: customer.balance()["balance"] == granted, "the grants")
            assert customer.credits_remaining == granted

            admin.send_events([scan(account, SCAN_CREDITS)])
            poll_sync(lambda: customer.balance()["available"] == granted - SCAN_CREDITS, "a scan")
            assert customer.credits_remaining == granted - SCAN_CREDITS

            page = customer.ledger(limit=2)
            assert page["hasMore"] and page["nextCursor"] and len(page["data"]) == 2
            entries = list(customer.iter_ledger(limit=2))
            assert [e["seq"] for e in entries] == [5, 4, 3, 2, 1]
            assert [e["delta"] for e in entries] == [-SCAN_CREDITS, 5, *reversed(GRANTS)]

            refused = customer.check(granted)
            assert refused["allowed"] is False
            assert refused["available"] == granted - SCAN_CREDITS
            assert customer.check(1, "POST /v1/scanner/scan")["allowed"] is True
            with pytest.raises(ProblemError) as missing:
                customer.ledger_entry(str(uuid.uuid4()))
            assert (missing.value.status, missing.value.slug) == (404, "not-found")


def poll_sync(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {DEADLINE_S} s waiting for {what}"
        time.sleep(0.05)


async def test_the_sync_client_against_the_live_api(live_api: LiveApi) -> None:
    await asyncio.to_thread(sync_scenario, live_api, "py_sync_client")


async def test_the_async_client_against_the_live_api(live_api: LiveApi) -> None:
    account = "py_async_client"
    async with AsyncCreditLedgerClient(
        live_api.url, admin_token=live_api.admin_token, account=account
    ) as admin:
        await admin.create_account(account, "Python async client")
        secret = (await admin.create_key())["secret"]
        for amount in GRANTS:
            accepted = await admin.grant(amount, bucket="gift")
            outcome = await admin.wait_for_command(accepted["commandId"], timeout_s=DEADLINE_S)
            assert outcome["status"] == "applied", outcome
        await admin.send_events([scan(account, SCAN_CREDITS)])
        async with AsyncCreditLedgerClient(live_api.url, api_key=secret) as customer:

            async def settled() -> bool:
                return (await customer.balance())["available"] == TOTAL - SCAN_CREDITS

            await wait_until(settled, "the grants and the scan", DEADLINE_S)
            assert customer.credits_remaining == TOTAL - SCAN_CREDITS
            seqs = [entry["seq"] async for entry in customer.iter_ledger(limit=1)]
            assert seqs == [4, 3, 2, 1]
            seq = customer.ledger_seq  # what the balance reflected: the other reads wait for it
            assert seq == 4
            grants = await customer.grants(min_seq=seq)
            assert sorted(g["remaining"] for g in grants["data"]) == sorted(
                [GRANTS[0] - SCAN_CREDITS, *GRANTS[1:]]
            )
            summary = await customer.summary(period="daily", min_seq=seq)
            assert summary["usage"]["totalRequests"] == 1


async def run(command: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """A subprocess without blocking this loop (which serves the API it talks to)."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=SDK, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{' '.join(command)} did not finish in {timeout_s} s") from None
    return process.returncode or 0, output.decode("utf-8", "replace")


async def test_the_typescript_sdk_against_the_live_api(live_api: LiveApi, tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None and shutil.which("node"), (
        "Node.js 20+ and npm are needed: `make test-deps` installs them"
    )
    env = {**os.environ, "CREDITLEDGER_API_URL": live_api.url,
           "CREDITLEDGER_ADMIN_TOKEN": live_api.admin_token,
           "CREDITLEDGER_HOOK_URL": live_api.hooks.url, "NO_COLOR": "1"}  # fmt: skip
    if not (SDK / "node_modules" / ".bin" / "tsc").exists():
        code, output = await run([npm, "ci", "--no-audit", "--no-fund"], env, NPM_INSTALL_S)
        assert code == 0, output[-4000:]
    generated = tmp_path / "openapi.ts"
    code, output = await run(
        [str(SDK / "node_modules" / ".bin" / "openapi-typescript"),
         "../../schemas/json/openapi.json", "-o", str(generated)], env, NODE_TESTS_S,
    )  # fmt: skip
    assert code == 0, output[-4000:]
    assert generated.read_text() == (SDK / "src" / "openapi.ts").read_text(), (
        "sdk/typescript/src/openapi.ts is not what schemas/json/openapi.json generates: "
        "run `npm run generate` in sdk/typescript and commit it"
    )
    code, output = await run([npm, "run", "build"], env, NODE_TESTS_S)
    assert code == 0, output[-4000:]
    code, output = await run(["node", "--test", "dist/test/"], env, NODE_TESTS_S)
    assert code == 0, output[-6000:]
    # the live suite ran (a suite that could not start would still exit non-zero, but say so)
    assert re.search(r"^ok \d+ - against the live API", output, re.MULTILINE), output[-4000:]
    assert "# fail 0" in output, output[-4000:]
