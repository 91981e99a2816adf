"""A record on another partition than its account's is forwarded there, not applied (plan.py)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.core.model import AccountSettings, AccountState
from services.core.pricing import DEFAULT_PRICE_BOOK
from services.writer.decoding import DeadLetterCode, IdKind, decode_command, decode_usage
from services.writer.plan import (
    FORWARDED_FROM_HEADER,
    InputRecord,
    home_partition,
    misrouted,
    plan_batch,
)
from services.writer.store import _forward_outbox_row

USAGE_TOPIC = "credits.usage.v1"
COMMAND_TOPIC = "credits.commands.v1"
PARTITIONS = 4
LOG_TIME = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "acct_42"
HOME = home_partition(ACCOUNT, PARTITIONS)
AWAY = (HOME + 1) % PARTITIONS


def usage_value(request_id: str = "req_1", account_id: str = ACCOUNT) -> bytes:
    return json.dumps(
        {"request_id": request_id, "account_id": account_id, "key_id": "key_7",
         "endpoint": "POST /v1/scanner/scan", "status_code": 200,
         "occurred_at": "2026-11-21T10:00:00Z", "credits": 1}
    ).encode()  # fmt: skip


def grant_value(command_id: str = "cmd_1") -> bytes:
    return json.dumps(
        {"type": "grant", "command_id": command_id, "account_id": ACCOUNT,
         "occurred_at": "2026-11-01T00:00:00Z", "amount": 100}
    ).encode()  # fmt: skip


def usage_record(
    value: bytes,
    partition: int,
    offset: int = 0,
    key: bytes | None = ACCOUNT.encode(),
    headers: tuple[tuple[str, bytes], ...] = (("trace", b"t-1"),),
    partition_count: int | None = PARTITIONS,
) -> InputRecord:
    return InputRecord(
        topic=USAGE_TOPIC,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=headers,
        log_time=LOG_TIME + timedelta(milliseconds=offset),
        decoded=decode_usage(key, value, DEFAULT_PRICE_BOOK),
        partition_count=partition_count,
    )


def command_record(value: bytes, partition: int, offset: int = 0) -> InputRecord:
    key = ACCOUNT.encode()
    return InputRecord(
        topic=COMMAND_TOPIC,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=(),
        log_time=LOG_TIME + timedelta(milliseconds=offset),
        decoded=decode_command(key, value),
        partition_count=PARTITIONS,
    )


def fresh(*accounts: str) -> dict[str, AccountState]:
    return {
        a: AccountState(a, settings=AccountSettings(credit_limit=1_000_000))
        for a in accounts or (ACCOUNT,)
    }


@pytest.mark.parametrize(
    ("key", "partition"),
    [("", 681), ("a", 524), ("ab", 434), ("abc", 107), ("123456789", 566)],
)
def test_the_home_partition_is_the_java_clients_murmur2_partition(key: str, partition: int) -> None:
    # Kafka's Java DefaultPartitioner over 1000 partitions (kafka-python's compatibility table).
    assert home_partition(key, 1000) == partition


def test_a_record_on_its_accounts_partition_is_applied() -> None:
    record = usage_record(usage_value(), HOME)
    assert misrouted(record) is None
    plan = plan_batch([record], fresh(), {})
    assert plan.forwards == []
    assert [p.idempotency_id for p in plan.processed] == ["req_1"]
    assert len(plan.entries) == 1


def test_a_record_on_another_partition_is_forwarded_not_applied() -> None:
    record = usage_record(usage_value(), AWAY, offset=17)
    assert misrouted(record) == HOME
    plan = plan_batch([record], {}, {})  # its account is not even loaded: it is not decided here
    assert plan.entries == [] and plan.processed == [] and plan.traffic == {}
    assert plan.dead_letters == [] and plan.duplicates == 0
    (forward,) = plan.forwards
    assert (forward.record, forward.account_id, forward.to) == (record, ACCOUNT, HOME)
    assert forward.origin == f"{USAGE_TOPIC}/{AWAY}/17"
    assert forward.headers() == [
        ("trace", b"t-1"),
        (FORWARDED_FROM_HEADER, f"{USAGE_TOPIC}/{AWAY}/17".encode()),
    ]


def test_the_forward_is_an_outbox_row_of_the_same_topic_keyed_by_account_with_the_same_bytes() -> (
    None
):
    value = usage_value()
    (forward,) = plan_batch([usage_record(value, AWAY, offset=3)], {}, {}).forwards
    account_id, topic, key, row_value, headers = _forward_outbox_row(forward)
    assert (account_id, topic, key, row_value) == (ACCOUNT, USAGE_TOPIC, ACCOUNT.encode(), value)
    decoded = [(name, base64.b64decode(v)) for name, v in headers]
    assert decoded == [
        ("trace", b"t-1"),
        (FORWARDED_FROM_HEADER, f"{USAGE_TOPIC}/{AWAY}/3".encode()),
    ]


def test_a_keyless_record_is_routed_by_its_account_id_and_forwarded_keyed() -> None:
    record = usage_record(usage_value(), AWAY, key=None)
    (forward,) = plan_batch([record], {}, {}).forwards
    assert forward.to == HOME
    assert _forward_outbox_row(forward)[2] == ACCOUNT.encode()
    assert misrouted(usage_record(usage_value(), HOME, key=None)) is None


def test_a_command_on_another_partition_is_forwarded_to_its_topics_home_partition() -> None:
    (forward,) = plan_batch([command_record(grant_value(), AWAY)], {}, {}).forwards
    assert (forward.record.topic, forward.to) == (COMMAND_TOPIC, HOME)


def test_undecodable_records_are_dead_lettered_where_they_land() -> None:
    malformed = usage_record(b"{not json", AWAY, offset=0)
    wrong_key = usage_record(usage_value(), AWAY, offset=1, key=b"acct_other")
    plan = plan_batch([malformed, wrong_key], {}, {})
    assert plan.forwards == []
    codes = [d.code for d in plan.dead_letters]
    assert codes == [DeadLetterCode.MALFORMED_JSON, DeadLetterCode.KEY_MISMATCH]


def test_an_unknown_partition_count_applies_the_record_where_it_landed() -> None:
    record = usage_record(usage_value(), AWAY, partition_count=None)
    assert misrouted(record) is None
    assert len(plan_batch([record], fresh(), {}).entries) == 1


def test_the_forwarded_copy_on_the_home_partition_is_applied_and_a_second_copy_is_a_duplicate() -> (
    None
):
    origin = ((FORWARDED_FROM_HEADER, f"{USAGE_TOPIC}/{AWAY}/5".encode()),)
    first = usage_record(usage_value(), HOME, offset=10, headers=origin)
    again = usage_record(usage_value(), HOME, offset=11, headers=origin)  # relay crash: resent
    plan = plan_batch([first, again], fresh(), {})
    assert plan.forwards == []
    assert [p.idempotency_id for p in plan.processed] == ["req_1"]
    assert len(plan.entries) == 1 and plan.duplicates == 1
    # ... and in a later batch, its id already stored
    seen = {(IdKind.REQUEST, ACCOUNT, "req_1"): plan.processed[0].payload_sha256}
    later = plan_batch(
        [usage_record(usage_value(), HOME, offset=12, headers=origin)], fresh(), seen
    )
    assert later.entries == [] and later.duplicates == 1


def test_a_forward_claims_no_ids_and_keeps_the_order_of_its_partition() -> None:
    others = [a for a in (f"acct_{n}" for n in range(100)) if home_partition(a, PARTITIONS) == AWAY]
    local = others[0]
    records = [
        usage_record(usage_value("req_1"), AWAY, offset=0),
        usage_record(usage_value("req_x", local), AWAY, offset=1, key=local.encode()),
        usage_record(usage_value("req_2"), AWAY, offset=2),
        usage_record(usage_value("req_3"), AWAY, offset=3),
    ]
    plan = plan_batch(records, fresh(local), {})
    assert [f.record.offset for f in plan.forwards] == [0, 2, 3]
    assert [(p.account_id, p.idempotency_id) for p in plan.processed] == [(local, "req_x")]
    assert {e.account_id for e in plan.entries} == {local}


def test_a_record_forwarded_again_names_only_its_latest_origin() -> None:
    # The partition count changed between two forwards: the copy moves on, one origin header.
    earlier = ((FORWARDED_FROM_HEADER, b"credits.usage.v1/9/1"), ("trace", b"t-1"))
    (forward,) = plan_batch(
        [usage_record(usage_value(), AWAY, 4, headers=earlier)], {}, {}
    ).forwards
    assert forward.headers() == [
        ("trace", b"t-1"),
        (FORWARDED_FROM_HEADER, f"{USAGE_TOPIC}/{AWAY}/4".encode()),
    ]
