"""Webhooks end to end on real Kafka and Postgres: the writer raises an alert, the worker POSTs
it signed to receivers on 127.0.0.1, retries what fails with the same id, and a dead endpoint
holds up nobody; the admin API registers, lists, deletes and shows the tries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.platform.settings import Settings
from services.runtime import Running, running
from services.webhooks.signing import SIGNATURE_HEADER, verify
from tests.api_client import admin_headers, api_client, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import publish, wait_until

pytestmark = pytest.mark.integration
ACCOUNT = "acct_hooks"
CROSSING_DEADLINE_S = 5.0  # the bound: the webhook arrives within 5 s of the crossing


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


@dataclass
class Receiver:
    """A tiny HTTP server: `fail_first` requests answered 500, then 200; `hang`: no answer."""

    fail_first: int = 0
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines if x)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(headers, body, time.monotonic()))
                if self.hang:
                    await asyncio.sleep(3600)  # never answers: the worker's timeout must end it
                status = 500 if len(self.requests) <= self.fail_first else 200
                reason = b"Internal Server Error" if status == 500 else b"OK"
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
                    % (status, reason)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def fast_retries(settings: Settings, **overrides: Any) -> Settings:
    assert settings.webhooks_consumer_group.endswith(".webhooks"), "a group of its own"
    return settings.model_copy(
        update={
            "webhooks_allow_private": True,
            "webhook_backoff_first_s": 0.3,
            "webhook_backoff_factor": 2.0,
            "webhook_backoff_max_s": 2.0,
            "webhook_poll_interval_s": 0.1,
            "webhook_timeout_s": 3.0,
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def pipeline_and_api(
    settings: Settings,
) -> AsyncIterator[tuple[Running, httpx.AsyncClient]]:
    async with (
        running(settings, ("writer", "projector", "webhooks")) as handle,
        api_client(settings, handle.pool, handle.producer) as http,
    ):
        yield handle, http


async def register(
    http: httpx.AsyncClient, settings: Settings, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "description": "test receiver"}
    if events is not None:
        body["events"] = events
    answer = await http.post("/v1/admin/webhooks", json=body, headers=admin_headers(settings))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["secret"].startswith("whsec_")
    return created


async def cross_low_balance(handle: Running, settings: Settings) -> float:
    """Grant 100 with a low-balance line at 50, then a call of 60: one crossing. Returns the
    monotonic time the crossing call was acknowledged by Kafka."""
    await publish(
        handle.producer,
        settings.commands_topic,
        [
            command("account_settings", ACCOUNT, "s1", occurred_at=at(0), low_balance_threshold=50),
            grant(ACCOUNT, 100, "g1"),
        ],
    )

    async def settled() -> bool:
        seq = await handle.pool.fetchval(
            "SELECT seq FROM writer_accounts WHERE account_id = $1", ACCOUNT
        )
        return bool(seq == 1)

    await wait_until(settled, "the grant to be applied", components=handle.tasks)
    await publish(handle.producer, settings.usage_topic, [usage(ACCOUNT, "r1", credits=60)])
    return time.monotonic()


def assert_signed(received: Received, secret: str) -> dict[str, Any]:
    header = received.headers[SIGNATURE_HEADER.lower()]
    assert verify(secret, header, received.body, int(time.time())), header
    assert not verify("whsec_wrong", header, received.body, int(time.time()))
    event: dict[str, Any] = json.loads(received.body)
    return event


async def command_status(
    http: httpx.AsyncClient, settings: Settings, command_id: str
) -> dict[str, Any]:
    answer: dict[str, Any] = {}

    async def decided() -> bool:
        nonlocal answer
        response = await http.get(
            f"/v1/admin/commands/{command_id}", headers=admin_headers(settings)
        )
        answer = response.json()
        return response.status_code == 200 and answer["status"] != "pending"

    await wait_until(decided, f"command {command_id} to be decided", 30)
    return answer


async def deliveries(http: httpx.AsyncClient, settings: Settings, hook_id: str) -> list[Any]:
    answer = await http.get(
        f"/v1/admin/webhooks/{hook_id}/deliveries", headers=admin_headers(settings)
    )
    assert answer.status_code == 200, answer.text
    data: list[Any] = answer.json()["data"]
    return data


async def test_a_signed_low_balance_webhook_arrives_and_a_dead_endpoint_delays_nobody(
    namespace: Settings,
) -> None:
    settings = fast_retries(namespace)
    healthy, dead = await Receiver().start(), await Receiver(hang=True).start()
    try:
        async with pipeline_and_api(settings) as (handle, http):
            # The dead endpoints are registered first and take every alert type: one never
            # answers, the other refuses connections.
            dead_hook = await register(http, settings, dead.url)
            refusing_hook = await register(http, settings, f"http://127.0.0.1:{closed_port()}/x")
            hook = await register(http, settings, healthy.url, ["low_balance"])
            crossed_at = await cross_low_balance(handle, settings)

            async def arrived() -> bool:
                return bool(healthy.requests)

            await wait_until(arrived, "the low-balance webhook", CROSSING_DEADLINE_S, handle.tasks)
            assert healthy.requests[0].at - crossed_at < CROSSING_DEADLINE_S
            event = assert_signed(healthy.requests[0], hook["secret"])
            assert event["type"] == "low_balance" and event["accountId"] == ACCOUNT
            assert event["id"] == f"{ACCOUNT}:2:low_balance"
            assert event["data"]["available"] == 40 and event["data"]["threshold"] == 50
            assert set(event) == {"id", "type", "createdAt", "accountId", "data"}
            assert [json.loads(r.body)["type"] for r in healthy.requests] == ["low_balance"]

            async def dead_try_recorded() -> bool:
                rows = await deliveries(http, settings, dead_hook["id"])
                return any(d["attempts"] for d in rows)

            await wait_until(dead_try_recorded, "the dead endpoint's first try", 30, handle.tasks)
            [dead_delivery] = [
                d
                for d in await deliveries(http, settings, dead_hook["id"])
                if d["eventType"] == "low_balance"
            ]
            attempt = dead_delivery["attempts"][0]
            assert attempt["statusCode"] is None and "no answer" in attempt["error"]
            assert dead_delivery["status"] == "pending" and dead_delivery["nextTryAt"]
            [refused] = await deliveries(http, settings, refusing_hook["id"])
            assert refused["attempts"] and refused["attempts"][0]["statusCode"] is None
            assert "ConnectError" in refused["attempts"][0]["error"]
            [ok] = await deliveries(http, settings, hook["id"])
            assert ok["status"] == "delivered" and ok["attempts"][0]["statusCode"] == 200
            assert ok["eventId"] == event["id"] and ok["attempts"][0]["latencyMs"] >= 0
    finally:
        await healthy.close()
        await dead.close()


async def test_failed_tries_are_retried_with_the_same_id_and_listed(namespace: Settings) -> None:
    settings = fast_retries(namespace)
    flaky = await Receiver(fail_first=2).start()
    try:
        async with pipeline_and_api(settings) as (handle, http):
            hook = await register(http, settings, flaky.url, ["low_balance"])
            await cross_low_balance(handle, settings)

            async def third_try() -> bool:
                return len(flaky.requests) >= 3

            await wait_until(third_try, "the third try", 30, handle.tasks)
            events = [assert_signed(r, hook["secret"]) for r in flaky.requests]
            assert len({e["id"] for e in events}) == 1, "every try carries the same id"
            assert len({r.body for r in flaky.requests}) == 1, "and the same body"

            async def recorded() -> bool:
                rows = await deliveries(http, settings, hook["id"])
                return bool(rows) and rows[0]["status"] == "delivered"

            await wait_until(recorded, "the delivery to be recorded delivered", 10, handle.tasks)
            [delivery] = await deliveries(http, settings, hook["id"])
            assert delivery["tries"] == 3 and delivery["eventId"] == events[0]["id"]
            attempts = delivery["attempts"]
            assert [a["statusCode"] for a in attempts] == [500, 500, 200]
            assert [a["try"] for a in attempts] == [1, 2, 3]
            assert attempts[0]["error"] == "HTTP 500" and attempts[2]["error"] is None
            assert len(flaky.requests) == 3, "nothing is sent once delivered"
    finally:
        await flaky.close()


async def test_pending_retries_survive_a_restart_of_the_worker(namespace: Settings) -> None:
    settings = fast_retries(namespace, webhook_backoff_first_s=1.0)
    flaky = await Receiver(fail_first=1).start()
    try:
        async with running(settings, ("writer", "projector")) as handle:
            async with (
                running(settings, ("webhooks",)),
                api_client(settings, handle.pool, handle.producer) as http,
            ):
                hook = await register(http, settings, flaky.url, ["low_balance"])
                await cross_low_balance(handle, settings)

                async def first_try() -> bool:
                    return len(flaky.requests) >= 1

                await wait_until(first_try, "the first try", 30, handle.tasks)
            # The worker stopped with the retry pending in Postgres; a new one resumes it.
            async with running(settings, ("webhooks",)):

                async def second_try() -> bool:
                    return len(flaky.requests) >= 2

                await wait_until(second_try, "the retry after a restart", 30, handle.tasks)
            ids = {json.loads(r.body)["id"] for r in flaky.requests}
            assert len(ids) == 1 and hook["id"].startswith("we_")
    finally:
        await flaky.close()


async def test_grant_expiring_is_delivered_when_the_notice_comes_due(namespace: Settings) -> None:
    """A quiet account: the scheduler's `expire` at the notice instant makes the writer notice
    the grant, and the notice goes out as a webhook."""
    settings = fast_retries(namespace, expiry_scan_interval_s=0.5)
    receiver = await Receiver().start()
    try:
        async with pipeline_and_api(settings) as (handle, http):
            hook = await register(http, settings, receiver.url, ["grant_expiring"])
            # The notice time is an account setting (default 3 days): one day here.
            await new_customer(http, settings, ACCOUNT)
            answer = await http.post(
                f"/v1/admin/accounts/{ACCOUNT}/settings",
                json={"grant_expiring_notice_s": 86_400},
                headers=admin_headers(settings),
            )
            assert answer.status_code == 202, answer.text
            status = await command_status(http, settings, answer.json()["commandId"])
            assert status["status"] == "applied", status
            now = datetime.now(UTC)
            expires_at = now + timedelta(days=1, seconds=3)  # the notice is due in 3 s
            await publish(
                handle.producer,
                settings.commands_topic,
                [
                    grant(
                        ACCOUNT, 80, "g-exp", occurred_at=now.isoformat(),
                        expires_at=expires_at.isoformat(), bucket="promotional",
                    )
                ],
            )  # fmt: skip

            async def noticed() -> bool:
                return bool(receiver.requests)

            await wait_until(noticed, "the grant_expiring webhook", 30, handle.tasks)
            event = assert_signed(receiver.requests[0], hook["secret"])
            assert event["type"] == "grant_expiring"
            assert event["id"] == f"{ACCOUNT}:1:grant_expiring:g-exp"
            assert event["data"]["grantId"] == "g-exp" and event["data"]["remaining"] == 80
            assert datetime.fromisoformat(event["data"]["expiresAt"]) == expires_at
            assert datetime.fromisoformat(event["createdAt"]) >= expires_at - timedelta(days=1)
    finally:
        await receiver.close()
