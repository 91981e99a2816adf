"""The retry window starts when the alert was raised (its record's time on the alerts topic),
not at the alert's event time, which a late usage event can make days old."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord

from services.webhooks.store import Endpoint
from services.webhooks.worker import _deliveries

RAISED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def alert_record(timestamp_ms: int, occurred_at: datetime) -> ConsumerRecord[bytes, bytes]:
    alert = {
        "alert_id": "acct_1:7:depleted", "account_id": "acct_1", "type": "depleted",
        "occurred_at": occurred_at.isoformat(), "available": 0, "ledger_seq": 7, "details": {},
    }  # fmt: skip
    return ConsumerRecord(
        topic="credits.alerts.v1", partition=0, offset=3, timestamp=timestamp_ms,
        timestamp_type=0, key=b"acct_1", value=json.dumps(alert).encode(), checksum=None,
        serialized_key_size=6, serialized_value_size=1, headers=[],
    )  # fmt: skip


def endpoint() -> Endpoint:
    return Endpoint(
        "we_1", "https://93.184.215.14/", frozenset(), "whsec_s", datetime(2026, 1, 1, tzinfo=UTC)
    )


def test_a_late_events_alert_counts_from_when_it_was_raised() -> None:
    days_old = RAISED_AT - timedelta(days=4)
    record = alert_record(int(RAISED_AT.timestamp() * 1000), days_old)
    [delivery] = _deliveries([record], [endpoint()])
    assert delivery.alert_at == RAISED_AT
