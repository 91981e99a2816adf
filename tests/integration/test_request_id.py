"""A request id travels from the HTTP request to the Kafka headers of the command it publishes
and into the logs: the API's access line and the writer's line for that command, on real Kafka
and Postgres."""

from __future__ import annotations

import time

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.platform.kafka import new_reader
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import admin_headers, api_client
from tests.log_capture import captured_logs
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration
ACCOUNT = "traced"


async def _command_with_header(settings: Settings, header: bytes) -> ConsumerRecord:
    """The commands topic's record carrying `request_id: header` (waits for it)."""
    consumer = new_reader(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = settings.commands_topic
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                for record in batch:
                    if ("request_id", header) in list(record.headers):
                        return record
        raise AssertionError(f"no command with request_id {header!r} on {topic}")
    finally:
        await consumer.stop()


async def test_the_request_id_reaches_the_command_headers_and_the_logs(
    namespace: Settings,
) -> None:
    rid = "req-0123.abc:XYZ"
    with captured_logs(namespace) as lines:
        async with running(namespace, ("writer",)) as handle:
            async with api_client(namespace, handle.pool, handle.producer) as http:
                admin = admin_headers(namespace)
                created = await http.post(
                    "/v1/admin/accounts", json={"account_id": ACCOUNT, "name": "t"}, headers=admin
                )
                assert created.status_code in (200, 201), created.text
                granted = await http.post(
                    f"/v1/admin/accounts/{ACCOUNT}/grants",
                    json={"amount": 5}, headers={**admin, "X-Request-Id": rid},
                )  # fmt: skip
                assert granted.status_code == 202, granted.text
                assert granted.headers["x-request-id"] == rid
                command_id = granted.json()["commandId"]

            record = await _command_with_header(namespace, rid.encode())
            assert record.key == ACCOUNT.encode()

            def writer_line() -> list[dict[str, object]]:
                return [
                    line for line in lines()
                    if line["event"] == "command committed" and line.get("request_id") == rid
                ]  # fmt: skip

            async def logged() -> bool:
                return bool(writer_line())

            await wait_until(logged, "the writer to log the command", components=handle.tasks)
    (committed,) = writer_line()
    assert committed["command_id"] == command_id and committed["outcome"] == "applied"
    access = [line for line in lines() if line["logger"] == "creditledger.access"]
    grant_line = next(line for line in access if line.get("request_id") == rid)
    assert grant_line["event"] == "request"
    assert grant_line["method"] == "POST" and grant_line["status"] == 202
    assert grant_line["path"] == f"/v1/admin/accounts/{ACCOUNT}/grants"
    assert grant_line["route"] == "/v1/admin/accounts/{account_id}/grants"
    assert isinstance(grant_line["duration_ms"], float)
    assert "client" in grant_line
    # A request without one gets a fresh id, as does one whose id is not plain.
    others = [line["request_id"] for line in access if line.get("request_id") != rid]
    assert others and all(isinstance(other, str) and len(other) == 32 for other in others)


async def test_an_unsafe_request_id_is_replaced(namespace: Settings) -> None:
    async with (
        running(namespace, ()) as handle,
        api_client(namespace, handle.pool, handle.producer) as http,
    ):
        for unsafe in (b"a" * 129, b"two words", b"x\xe9", b"", b"<script>", b"a;b"):
            answer = await http.get("/healthz", headers={b"X-Request-Id": unsafe})
            assert answer.status_code == 200
            echoed = answer.headers["x-request-id"]
            assert echoed.encode() != unsafe and len(echoed) == 32
        kept = await http.get("/healthz", headers={"X-Request-Id": "ok-1"})
        assert kept.headers["x-request-id"] == "ok-1"
