"""Balance and check in one round trip, against real Kafka and Postgres (issue 14).

- The key cache honours revocation: a key revoked through another API process (whose cache
  this one does not share) is refused within the TTL (1 s), and an unknown key is never
  remembered as valid.
- The one statement reads as the customer: its PL/pgSQL functions switch to the reader role
  and the account for their transaction only, under row-level security, on a pool that sends
  no reset query; a revoked key's statement reads no state.
- The fast path and the FastAPI routes answer the same, on real data.
- `creditledger api` with two workers serves, counts both workers' requests in /metrics, and
  stops; killed (-9), it takes its workers with it, so a restart finds the port free.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.api.app import create_app
from services.api.fastreads import FastReads
from services.api.keys import new_secret, secret_hash
from services.api.reads.balance import KEY_AND_STATE, STATE_AS_CUSTOMER, customer_fetchrow
from services.api.workers import settings_env
from services.platform.postgres import create_pool
from services.platform.settings import Settings
from services.runtime import Running, running
from tests.api_client import BASE_URL, Customer, admin_headers, new_customer
from tests.messages import grant, usage
from tests.pipeline import Driver, wait_until

pytestmark = pytest.mark.integration
REVOCATION_BOUND_S = 1.5  # the TTL (1 s) plus a poll and the test's own scheduling
POLL_S = 0.02
OWNER_AGAIN = (
    "SELECT (current_user = session_user, current_setting('creditledger.account_id', true))"
)


@pytest.fixture
async def pipeline(namespace: Settings) -> AsyncIterator[Running]:
    async with running(namespace, ("writer", "projector")) as handle:
        yield handle


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def _funded(pipeline: Running, settings: Settings, http: httpx.AsyncClient) -> Customer:
    driver = Driver(settings, pipeline.pool, pipeline.producer, pipeline.tasks)
    customer = await new_customer(http, settings, "fast_acme")
    await driver.commands(grant("fast_acme", 100, "g1"))
    await driver.usage(usage("fast_acme", "r1", credits=7))
    await driver.settled()
    return customer


async def test_a_key_revoked_by_another_process_is_refused_within_a_second(
    pipeline: Running, namespace: Settings
) -> None:
    reader = create_app(namespace, pipeline.pool, pipeline.producer)
    other = create_app(namespace, pipeline.pool, pipeline.producer)  # another API process
    async with _client(reader) as http, _client(other) as admin_http:
        customer = await _funded(pipeline, namespace, admin_http)
        for url in ("/v1/credits/balance", "/v1/credits/check?cost=1"):
            answer = await http.get(url, headers=customer.headers)
            assert answer.status_code == 200, answer.text  # and the reader remembers the key
        assert len(reader.state.key_cache) == 1
        revoked = await admin_http.delete(
            f"/v1/admin/accounts/{customer.account_id}/keys/{customer.key_id}",
            headers=admin_headers(namespace),
        )
        assert revoked.status_code == 204
        since = time.monotonic()
        deadline = since + 10  # a wrong cache would never refuse it: fail, don't hang
        while True:
            answer = await http.get("/v1/credits/check?cost=1", headers=customer.headers)
            if answer.status_code == 403 or time.monotonic() > deadline:
                break
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(POLL_S)
        took = time.monotonic() - since
        assert answer.status_code == 403 and answer.json()["type"].endswith("/key-revoked")
        assert took <= REVOCATION_BOUND_S, f"refused after {took:.2f} s"
        balance = await http.get("/v1/credits/balance", headers=customer.headers)
        assert balance.status_code == 403  # and stays refused, on every route


async def test_an_unknown_key_is_never_remembered(pipeline: Running, namespace: Settings) -> None:
    app = create_app(namespace, pipeline.pool, pipeline.producer)
    secret = new_secret()  # well formed, in no database
    async with _client(app) as http:
        for _ in range(3):
            answer = await http.get("/v1/credits/balance", headers={"x-api-key": secret})
            assert answer.status_code == 401
        assert getattr(app.state, "key_cache", None) is None or len(app.state.key_cache) == 0
        # Issued now (as if by another process, with the same secret): valid at once.
        await pipeline.pool.execute(
            "INSERT INTO accounts (account_id, name) VALUES ('late', 'late') ON CONFLICT DO NOTHING"
        )
        await pipeline.pool.execute(
            "INSERT INTO api_keys (account_id, key_id, secret_sha256) VALUES ('late', 'k', $1)",
            secret_hash(secret),
        )
        answer = await http.get("/v1/credits/balance", headers={"x-api-key": secret})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accountId"] == "late"


async def test_the_one_statement_reads_as_the_customer_and_leaves_nothing_behind(
    pipeline: Running, namespace: Settings
) -> None:
    driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
    await driver.commands(grant("one_a", 10, "ga"), grant("one_b", 20, "gb"))
    await driver.settled()
    await pipeline.pool.execute(
        "INSERT INTO api_keys (account_id, key_id, secret_sha256, revoked_at)"
        " VALUES ('one_a', 'live', 'hash-live', NULL), ('one_a', 'gone', 'hash-gone', now())"
    )
    assert namespace.database_url is not None
    pool = await create_pool(namespace.database_url, 1, reset_sessions=False)  # one connection
    try:
        row = await customer_fetchrow(pool, STATE_AS_CUSTOMER, "one_a")
        assert row is not None and row["balance"] == 10
        assert await customer_fetchrow(pool, STATE_AS_CUSTOMER, "nobody") is None
        live = await customer_fetchrow(pool, KEY_AND_STATE, "hash-live")
        assert live is not None and (live["account_id"], live["balance"]) == ("one_a", 10)
        gone = await customer_fetchrow(pool, KEY_AND_STATE, "hash-gone")
        assert gone is not None and gone["revoked_at"] is not None and gone["seq"] is None
        assert await customer_fetchrow(pool, KEY_AND_STATE, "hash-unknown") is None
        async with pool.acquire() as conn:
            # The statement was its own transaction: the owner again, no account set.
            assert await conn.fetchval(OWNER_AGAIN) == (True, "")
            async with conn.transaction(readonly=True):
                await conn.fetchrow(STATE_AS_CUSTOMER, "one_b")
                # Within a transaction the reader role holds until its end, under RLS.
                everyone = "SELECT array_agg(account_id ORDER BY account_id) FROM writer_accounts"
                assert await conn.fetchval(everyone) == ["one_b"]
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval("SELECT count(*) FROM api_keys")
            assert await conn.fetchval(OWNER_AGAIN) == (True, "")
            assert await conn.fetchval(everyone) == ["one_a", "one_b"]
    finally:
        await pool.close()


async def test_the_fast_path_and_the_routes_answer_the_same(
    pipeline: Running, namespace: Settings
) -> None:
    fast = create_app(namespace, pipeline.pool, pipeline.producer)
    plain = create_app(namespace, pipeline.pool, pipeline.producer)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not FastReads]  # type: ignore[comparison-overlap]
    async with _client(fast) as fast_http, _client(plain) as plain_http:
        customer = await _funded(pipeline, namespace, fast_http)
        urls = ["/v1/credits/balance", "/v1/credits/balance?min_seq=2",
                "/v1/credits/balance?min_seq=99", *(f"/v1/credits/check?cost={c}&endpoint=/x"
                                                     for c in (0, 1, 93, 94, 10**12))]  # fmt: skip
        plain_settings = plain.state.settings.model_copy(update={"api_read_wait_max_ms": 0})
        fast.state.settings = plain.state.settings = plain_settings  # a stale answer at once
        for url in urls:
            ours = await fast_http.get(url, headers=customer.headers)
            theirs = await plain_http.get(url, headers=customer.headers)
            assert ours.status_code == theirs.status_code, (url, ours.text, theirs.text)
            assert ours.content == theirs.content, url
            assert _stable(ours.headers) == _stable(theirs.headers), url
        check = await fast_http.get("/v1/credits/check?cost=94", headers=customer.headers)
        assert check.status_code == 402 and check.json()["available"] == 93


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _requests_counted(metrics: str, route: str) -> float:
    pattern = rf'^creditledger_http_requests_total\{{(?=[^}}]*route="{re.escape(route)}")'
    pattern += r'(?=[^}]*status="200")[^}]*\} ([0-9.e+]+)$'
    return sum(float(found) for found in re.findall(pattern, metrics, re.MULTILINE))


async def test_two_api_workers_serve_count_together_and_stop(namespace: Settings) -> None:
    settings = namespace.model_copy(update={"api_workers": 2, "api_port": _free_port()})
    url = f"http://{settings.api_host}:{settings.api_port}"
    async with running(settings, ("api",)) as handle:

        async def answers() -> bool:
            try:
                async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                    return (await http.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(answers, "the API workers to answer", 60, components=handle.tasks)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            customer = await new_customer(http, settings, "workers_acme")
        reads = 20
        for _ in range(reads):  # a connection each: both workers accept some
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                answer = await http.get("/v1/credits/balance", headers=customer.headers)
                assert answer.status_code == 200, answer.text
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            metrics = (await http.get("/metrics")).text
        assert _requests_counted(metrics, "/v1/credits/balance") == reads
        assert "creditledger_ledger_entries_total" in metrics  # and the scrape-time figures
        # Multiprocess mode too: the answering worker's process figures, no `_created` series.
        assert "process_resident_memory_bytes " in metrics
        assert "_created" not in metrics
    with pytest.raises(httpx.ConnectError):  # stopped: nothing listens any more
        async with httpx.AsyncClient(base_url=url, timeout=2) as http:
            await http.get("/healthz")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError:
            return False
    return True


async def test_a_killed_api_takes_its_workers_with_it(namespace: Settings) -> None:
    settings = namespace.model_copy(update={"api_workers": 2, "api_port": _free_port()})
    url = f"http://{settings.api_host}:{settings.api_port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "api", env={**os.environ, **settings_env(settings)},
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def answers() -> bool:
            assert process.returncode is None, "creditledger api exited"
            try:
                async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                    return (await http.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(answers, "creditledger api to answer", 90)
        process.send_signal(signal.SIGKILL)
        await process.wait()

        async def freed() -> bool:
            return _port_free(settings.api_host, settings.api_port)

        await wait_until(freed, "the workers to die with their supervisor", 3)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _stable(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The headers but X-Request-Id, which every answer has its own of."""
    return sorted((k, v) for k, v in headers.multi_items() if k != "x-request-id")
