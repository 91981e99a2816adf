"""`endpoint_usage` is the writer's whole (migration 0020): with no projector running at all, the
usage and summary reads show a batch's traffic and credits (net of refunds) as soon as the writer
commits it, at the writer's seq, never stale."""

from __future__ import annotations

import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import api_client, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import publish, wait_for_consumed

pytestmark = pytest.mark.integration


async def test_usage_and_summary_are_current_at_the_writers_commit(namespace: Settings) -> None:
    settings = namespace.model_copy(update={"api_read_wait_max_ms": 200})
    async with (
        running(namespace, ("writer",)) as writer_only,
        api_client(settings, writer_only.pool, writer_only.producer) as http,
    ):
        acme = await new_customer(http, settings, "u1")
        await publish(writer_only.producer, namespace.commands_topic, [grant("u1", 100, "g")])
        calls = [usage("u1", "a", credits=10, occurred_at=at(1)),
                 usage("u1", "b", 500, credits=4, occurred_at=at(2)),  # refunded at once
                 usage("u1", "free", credits=0, occurred_at=at(3))]  # fmt: skip
        await publish(writer_only.producer, namespace.usage_topic, calls)
        refund = command("refund", "u1", "rf", request_id="a", amount=3, occurred_at=at(3000))
        await publish(writer_only.producer, namespace.commands_topic, [refund])
        await wait_for_consumed(writer_only.pool, namespace, 5, writer_only.tasks)
        seq = await writer_only.pool.fetchval(
            "SELECT seq FROM writer_accounts WHERE account_id = 'u1'"
        )
        assert await writer_only.pool.fetchval("SELECT count(*) FROM balance_view") == 0
        by_day = await http.get(
            "/v1/usage", headers=acme.headers,
            params={"group_by": "day", "from": "2026-11-21", "min_seq": seq},
        )  # fmt: skip
        summary = await http.get(
            "/v1/account/summary", headers=acme.headers,
            params={"period": "yearly", "min_seq": seq},
        )  # fmt: skip
    for answer in (by_day, summary):
        assert answer.status_code == 200
        assert "X-Ledger-Stale" not in answer.headers
        assert answer.headers["X-Ledger-Seq"] == str(seq)
    rows = by_day.json()["rows"]
    assert [(r["key"], r["requests"], r["failedRequests"], r["credits"]) for r in rows] == [
        ("2026-11-21", 3, 1, 10 - 3),  # the refund, two days on, taken back from the call's day
    ]
    period = summary.json()["usage"]
    assert (period["totalRequests"], period["creditsConsumed"]) == (3, 7)
