"""Ledger entries on the wire (`credits.ledger.v1`), in the contract's field names."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.ledger import AlertMessage
from services.core.model import AlertRaised, Bucket, LedgerEntry


def entry_to_json_bytes(entry: LedgerEntry, entry_id: str | None = None) -> bytes:
    """The bytes the contract model of an entry writes (services/history/core_entries.py
    `to_message(entry).model_dump_json()`; tests/unit/test_writer_wire.py holds them equal),
    built without a pydantic model: one is written per entry, and building and validating the
    model cost more than the rest of the entry's write."""
    return orjson.dumps(_entry_json(entry, entry_id), option=orjson.OPT_UTC_Z)


def _entry_json(entry: LedgerEntry, entry_id: str | None) -> dict[str, Any]:
    bucket: dict[str, Any] | None = None
    if entry.bucket_grant_id is not None and entry.bucket_kind is not None:
        bucket = {
            "grant_id": entry.bucket_grant_id,
            "kind": entry.bucket_kind.value,
            "expires_at": None,
            "effective_at": None,
            "priority": None,
            "applies_to": None,
        }
        if (grant := entry.grant) is not None:
            bucket.update(grant_terms(grant))
    # The keys in LedgerEntryMessage's field order, as pydantic writes them.
    return {
        "id": entry_id or entry.entry_id, "account_id": entry.account_id, "seq": entry.seq,
        "delta": entry.delta, "balance_after": entry.balance_after, "reason": entry.reason.value,
        "source": entry.source, "bucket": bucket, "metadata": dict(entry.metadata),
        "reserved_delta": entry.reserved_delta, "occurred_at": entry.occurred_at,
        "recorded_at": entry.recorded_at,
    }  # fmt: skip


def alert_to_json_bytes(alert: AlertRaised) -> bytes:
    """`credits.alerts.v1`: `alert_id` is stable, so a consumer can drop redeliveries."""
    message = AlertMessage(
        alert_id=alert.alert_id,
        account_id=alert.account_id,
        type=alert.kind.value,
        occurred_at=alert.occurred_at,
        available=alert.available,
        ledger_seq=alert.after_seq,
        details=dict(alert.details),
    )
    return message.model_dump_json().encode()


def grant_terms(grant: Bucket) -> dict[str, object]:
    """A new bucket's terms, as carried by its grant entry (topic and `bucket_terms` column)."""
    return {
        "expires_at": grant.expires_at,
        "effective_at": grant.effective_at,
        "priority": grant.priority,
        "applies_to": list(grant.applies_to) if grant.applies_to is not None else None,
    }
