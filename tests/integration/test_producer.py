"""`UsagePublisher` on the real broker: bounded in flight, and every event lands exactly once."""

from __future__ import annotations

import pytest

from services.platform.settings import Settings
from services.producer.publisher import UsagePublisher, publish_usage
from services.runtime import running
from tests.messages import at, grant
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
ACCOUNTS = ("pub_a", "pub_b", "pub_c", "pub_d")
EVENTS = 500
MAX_IN_FLIGHT = 50


async def test_500_events_through_the_publisher_land_exactly_once(namespace: Settings) -> None:
    assert namespace.kafka_bootstrap is not None
    async with running(namespace, ("writer", "projector")) as handle:
        driver = Driver(namespace, handle.pool, handle.producer, handle.tasks)
        await driver.commands(*(grant(a, 1000, f"g_{a}") for a in ACCOUNTS))
        await driver.settled()

        request_ids: list[str] = []
        async with UsagePublisher(
            namespace.kafka_bootstrap, namespace.usage_topic, max_in_flight=MAX_IN_FLIGHT
        ) as publisher:
            for n in range(EVENTS):
                fields = {"account_id": ACCOUNTS[n % len(ACCOUNTS)], "key_id": "key_1",
                          "endpoint": "POST /v1/scanner/scan", "status_code": 200,
                          "credits": 1, "latency_ms": n}  # fmt: skip
                if n % 2:  # half with their own id and time, half filled in by the publisher
                    fields |= {"request_id": f"own_{n}", "occurred_at": at(1)}
                request_ids.append(await publish_usage(publisher, **fields))
                assert publisher.in_flight <= MAX_IN_FLIGHT
        assert publisher.in_flight == 0 and publisher.sent == EVENTS and publisher.failed == 0
        assert 1 < publisher.peak_in_flight <= MAX_IN_FLIGHT

        generated = [r for n, r in enumerate(request_ids) if n % 2 == 0]
        assert all(len(r) == 32 and int(r, 16) >= 0 for r in generated)
        assert len(set(request_ids)) == EVENTS

        driver.published += EVENTS
        await driver.settled()
        rows = await handle.pool.fetch("SELECT account_id, request_id FROM processed_requests")
        assert len(rows) == EVENTS
        assert {r["request_id"] for r in rows} == set(request_ids)
        for account in ACCOUNTS:
            assert (await driver.view(account))["balance"] == 1000 - EVENTS // len(ACCOUNTS)
            consumes = await handle.pool.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND reason = 'consume'",
                account,
            )
            assert consumes == EVENTS // len(ACCOUNTS)
