"""The writer's plan owns `endpoint_usage` whole: its Traffic rows carry, besides the calls, the
credits of the entries the batch writes, net of refunds, on the call's endpoint and UTC day (a
refund's own `consumed_at`), exactly the audit's fold of the messages it publishes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from projections.usage.credits import UsageKey, fold
from schemas.ledger_decode import decode_entry_message
from services.core.model import AccountSettings, AccountState
from services.core.pricing import DEFAULT_PRICE_BOOK
from services.writer.decoding import decode_command, decode_usage
from services.writer.plan import InputRecord, plan_batch
from services.writer.wire import entry_to_json_bytes

LOG_TIME = datetime(2026, 12, 1, tzinfo=UTC)
SCAN, REPORT = "POST /v1/scanner/scan", "GET /v1/reports/export"
DAY1, DAY2 = date(2026, 11, 21), date(2026, 11, 22)


def record(offset: int, value: dict[str, Any]) -> InputRecord:
    raw = json.dumps(value).encode()
    is_usage = "request_id" in value and "type" not in value
    decoded = decode_usage(None, raw, DEFAULT_PRICE_BOOK) if is_usage else decode_command(None, raw)
    return InputRecord("usage" if is_usage else "commands", 0, offset, None, raw, (),
                       LOG_TIME + timedelta(milliseconds=offset), decoded)  # fmt: skip


def call(offset: int, request_id: str, credits: int, at: str, endpoint: str = SCAN,
         status: int = 200) -> InputRecord:  # fmt: skip
    return record(offset, {"request_id": request_id, "account_id": "a", "key_id": "k",
                           "endpoint": endpoint, "status_code": status, "occurred_at": at,
                           "credits": credits})  # fmt: skip


def test_the_plans_credits_are_the_fold_of_its_entries_net_of_refunds() -> None:
    records = [
        record(
            0,
            {
                "type": "grant",
                "command_id": "g",
                "account_id": "a",
                "amount": 100,
                "occurred_at": "2026-11-01T00:00:00Z",
            },
        ),
        call(1, "r1", 10, "2026-11-21T23:59:00Z"),
        call(2, "r2", 4, "2026-11-21T10:00:00Z", status=500),  # consumed, refunded at once
        call(3, "r3", 7, "2026-11-22T00:01:00Z", endpoint=REPORT),
        call(4, "free", 0, "2026-11-22T00:02:00Z"),  # traffic, no entry
        record(
            5,
            {
                "type": "refund",
                "command_id": "rf",
                "account_id": "a",
                "request_id": "r1",
                "amount": 3,
                "occurred_at": "2026-11-25T00:00:00Z",
            },
        ),
    ]
    state = AccountState("a", settings=AccountSettings(credit_limit=0))
    plan = plan_batch(records, {"a": state}, {})
    assert not plan.dead_letters
    folded: dict[UsageKey, int] = {}
    for entry in plan.entries:
        fold(folded, decode_entry_message(entry_to_json_bytes(entry)))
    credits = {key: t.credits for key, t in plan.traffic.items()}
    assert credits == {("a", SCAN, DAY1): 10 - 3, ("a", REPORT, DAY2): 7, ("a", SCAN, DAY2): 0}
    assert {k: v for k, v in credits.items() if v} == {k: v for k, v in folded.items() if v}
    requests = {key: t.requests for key, t in plan.traffic.items()}
    assert requests == {("a", SCAN, DAY1): 2, ("a", REPORT, DAY2): 1, ("a", SCAN, DAY2): 1}
