"""The webhook body: `{id, type, createdAt, accountId, data}` made once per alert, from the alert
message on `credits.alerts.v1`; every try sends these same bytes."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from schemas.ledger import AlertMessage


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def event_body(alert: AlertMessage) -> bytes:
    """`id` is the alert's `alert_id`, stable across redeliveries of the alert, so a receiver
    drops duplicates by it; `createdAt` is when the alert happened (event time, UTC)."""
    data: dict[str, Any] = {"available": alert.available, "ledgerSeq": alert.ledger_seq}
    data.update({camel(name): value for name, value in alert.details.items()})
    created_at = alert.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    event = {
        "id": alert.alert_id,
        "type": alert.type,
        "createdAt": created_at,
        "accountId": alert.account_id,
        "data": data,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
