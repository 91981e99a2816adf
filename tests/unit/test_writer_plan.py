"""Decoding raw Kafka bytes into commands or dead letters, and planning a batch idempotently."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from services.core.model import (
    AccountSettings,
    AccountState,
    AdjustBalance,
    BucketKind,
    ConsumeUsage,
    GrantCredits,
)
from services.core.pricing import DEFAULT_PRICE_BOOK, PriceBook
from services.writer.decoding import (
    DeadLetterCode,
    Decoded,
    IdKind,
    Rejected,
    beyond_future_skew,
    decode_command,
    decode_usage,
)
from services.writer.plan import InputRecord, SeenKey, plan_batch

ACCOUNT = "acct_42"
KEY = ACCOUNT.encode()
USAGE_TOPIC = "credits.usage.v1"
COMMAND_TOPIC = "credits.commands.v1"
LOG_TIME = datetime(2026, 12, 1, tzinfo=UTC)


def usage_event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "request_id": "req_1",
        "account_id": ACCOUNT,
        "key_id": "key_7",
        "endpoint": "POST /v1/scanner/scan",
        "status_code": 200,
        "occurred_at": "2026-11-21T10:00:00Z",
        "credits": 1,
        "latency_ms": 87,
    }
    event.update(changes)
    return event


def grant_command(**changes: object) -> dict[str, object]:
    command: dict[str, object] = {
        "type": "grant",
        "command_id": "cmd_1",
        "account_id": ACCOUNT,
        "occurred_at": "2026-11-01T00:00:00Z",
        "amount": 100,
        "bucket": "subscription",
        "name": "November plan",
        "source": "invoice:in_9",
    }
    command.update(changes)
    return command


def adjustment_command(**changes: object) -> dict[str, object]:
    command: dict[str, object] = {
        "type": "adjustment",
        "command_id": "adj_1",
        "account_id": ACCOUNT,
        "occurred_at": "2026-11-02T00:00:00Z",
        "amount": -5,
        "reason": "correction",
    }
    command.update(changes)
    return command


def encode(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload).encode()


def decoded_usage(value: bytes, key: bytes | None = KEY) -> Decoded:
    result = decode_usage(key, value, DEFAULT_PRICE_BOOK)
    assert isinstance(result, Decoded), result
    return result


def decoded_command(value: bytes, key: bytes | None = KEY) -> Decoded:
    result = decode_command(key, value)
    assert isinstance(result, Decoded), result
    return result


def rejected_usage(value: bytes | None, key: bytes | None = KEY) -> Rejected:
    result = decode_usage(key, value, DEFAULT_PRICE_BOOK)
    assert isinstance(result, Rejected), result
    return result


def rejected_command(value: bytes | None, key: bytes | None = KEY) -> Rejected:
    result = decode_command(key, value)
    assert isinstance(result, Rejected), result
    return result


def log_time(offset: int) -> datetime:
    return LOG_TIME + timedelta(milliseconds=offset)


def usage_record(value: bytes, offset: int = 0, key: bytes | None = KEY) -> InputRecord:
    return InputRecord(
        topic=USAGE_TOPIC,
        partition=0,
        offset=offset,
        key=key,
        value=value,
        headers=(("trace", b"t-1"),),
        log_time=log_time(offset),
        decoded=decode_usage(key, value, DEFAULT_PRICE_BOOK),
    )


def command_record(value: bytes, offset: int = 0, key: bytes | None = KEY) -> InputRecord:
    return InputRecord(
        topic=COMMAND_TOPIC,
        partition=0,
        offset=offset,
        key=key,
        value=value,
        headers=(),
        log_time=log_time(offset),
        decoded=decode_command(key, value),
    )


def fresh(*accounts: str) -> dict[str, AccountState]:
    """New accounts (seq 0) allowed to go far below zero, so every call is charged in full."""
    return {
        account: AccountState(account, settings=AccountSettings(credit_limit=1_000_000))
        for account in accounts or (ACCOUNT,)
    }


def seen_key(decoded: Decoded) -> SeenKey:
    return (decoded.id_kind, decoded.account_id, decoded.idempotency_id)


# --- decode_usage ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"{not json", b"", None, b'{"request_id": "r', b"\xff\xfe"])
def test_unparseable_usage_is_malformed_json(value: bytes | None) -> None:
    rejected = rejected_usage(value)
    assert rejected.code is DeadLetterCode.MALFORMED_JSON
    assert rejected.message.startswith("not valid JSON: ")


@pytest.mark.parametrize("value", [b"[1]", b"null", b'"x"', b"42"])
def test_json_that_is_not_an_object_is_schema_invalid(value: bytes) -> None:
    rejected = rejected_usage(value)
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message == "(root): Input should be an object"


def test_fields_the_contract_does_not_name_are_ignored_and_named_ones_stay_strict() -> None:
    decoded = decoded_usage(encode(usage_event(colour="red", trace={"id": 7})))
    assert decoded.command == decoded_usage(encode(usage_event())).command
    assert decoded.payload_sha256 == decoded_usage(encode(usage_event())).payload_sha256
    rejected = rejected_usage(encode(usage_event(colour="red", status_code="200")))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("status_code: ")


def test_missing_required_usage_field_is_schema_invalid_naming_the_field() -> None:
    event = usage_event()
    del event["request_id"]
    rejected = rejected_usage(encode(event))
    assert (rejected.code, rejected.message) == (
        DeadLetterCode.SCHEMA_INVALID,
        "request_id: Field required",
    )


@pytest.mark.parametrize(
    "credits",
    [-1, 1_000_000_000_001, 10**30, 1.5, 1.0, "1", True],
    ids=["negative", "above-max", "huge", "fraction", "float", "string", "bool"],
)
def test_usage_credits_must_be_an_integer_within_bounds(credits: object) -> None:
    rejected = rejected_usage(encode(usage_event(credits=credits)))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("credits: ")


def test_usage_credits_at_the_maximum_is_accepted() -> None:
    command = decoded_usage(encode(usage_event(credits=1_000_000_000_000))).command
    assert isinstance(command, ConsumeUsage)
    assert command.credits == 1_000_000_000_000


@pytest.mark.parametrize("occurred_at", ["2026-11-21T10:00:00", "2026-11-21 10:00:00"])
def test_usage_time_without_offset_is_schema_invalid(occurred_at: str) -> None:
    rejected = rejected_usage(encode(usage_event(occurred_at=occurred_at)))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("occurred_at: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", ""),
        ("request_id", "r" * 129),
        ("account_id", "acct 42"),
        ("status_code", 99),
        ("status_code", 600),
        ("endpoint", ""),
    ],
)
def test_usage_field_bounds_are_schema_invalid(field: str, value: object) -> None:
    rejected = rejected_usage(encode(usage_event(**{field: value})), key=None)
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith(f"{field}: ")


def test_usage_keyed_by_another_account_is_key_mismatch() -> None:
    rejected = rejected_usage(encode(usage_event()), key=b"acct_43")
    assert rejected.code is DeadLetterCode.KEY_MISMATCH


def test_usage_without_key_is_accepted() -> None:
    assert decoded_usage(encode(usage_event()), key=None).account_id == ACCOUNT


def test_usage_decodes_to_a_consume_with_utc_time() -> None:
    decoded = decoded_usage(encode(usage_event(occurred_at="2026-11-21T11:30:00+01:30")))
    assert (decoded.id_kind, decoded.idempotency_id) == (IdKind.REQUEST, "req_1")
    assert decoded.command == ConsumeUsage(
        account_id=ACCOUNT,
        request_id="req_1",
        endpoint="POST /v1/scanner/scan",
        status_code=200,
        credits=1,
        occurred_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        key_id="key_7",
        latency_ms=87,
    )
    assert decoded.command.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("endpoint", "credits"),
    [
        ("POST /v1/scanner/scan", 1),
        ("POST /v1/scanner/deep-scan", 5),
        ("GET /v1/reports", 0),
        ("GET /v1/not-in-the-book", 1),
    ],
)
def test_usage_without_credits_is_priced_by_the_price_book(endpoint: str, credits: int) -> None:
    event = usage_event(endpoint=endpoint)
    del event["credits"]
    command = decoded_usage(encode(event)).command
    assert isinstance(command, ConsumeUsage)
    assert command.credits == credits


def test_usage_with_null_credits_is_priced_by_the_given_price_book() -> None:
    book = PriceBook(version="test", credits_by_endpoint={"POST /v1/x": 7}, default_credits=3)
    for endpoint, credits in (("POST /v1/x", 7), ("POST /v1/y", 3)):
        result = decode_usage(KEY, encode(usage_event(endpoint=endpoint, credits=None)), book)
        assert isinstance(result, Decoded)
        assert isinstance(result.command, ConsumeUsage)
        assert result.command.credits == credits


def test_explicit_usage_credits_override_the_price_book() -> None:
    command = decoded_usage(
        encode(usage_event(endpoint="POST /v1/scanner/deep-scan", credits=2))
    ).command
    assert isinstance(command, ConsumeUsage)
    assert command.credits == 2


# --- decode_command ---------------------------------------------------------------------------


def test_grant_decodes_with_its_kinds_default_priority_and_effective_from_occurred_at() -> None:
    decoded = decoded_command(encode(grant_command(expires_at="2026-12-01T01:00:00+01:00")))
    assert (decoded.id_kind, decoded.idempotency_id) == (IdKind.COMMAND, "cmd_1")
    assert decoded.command == GrantCredits(
        account_id=ACCOUNT,
        command_id="cmd_1",
        amount=100,
        kind=BucketKind.SUBSCRIPTION,
        priority=10,
        source="invoice:in_9",
        effective_at=datetime(2026, 11, 1, tzinfo=UTC),
        expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        applies_to=None,
        name="November plan",
        metadata={},
    )


def test_grant_keeps_explicit_priority_schedule_and_endpoints() -> None:
    command = decoded_command(
        encode(
            grant_command(
                bucket="gift",
                priority=0,
                effective_at="2026-11-05T00:00:00Z",
                applies_to=["POST /v1/scanner/scan"],
                metadata={"campaign": "bf"},
            )
        )
    ).command
    assert isinstance(command, GrantCredits)
    assert (command.kind, command.priority) == (BucketKind.GIFT, 0)
    assert command.effective_at == datetime(2026, 11, 5, tzinfo=UTC)
    assert command.applies_to == ("POST /v1/scanner/scan",)
    assert dict(command.metadata) == {"campaign": "bf"}


def test_grant_default_bucket_is_purchased() -> None:
    command_json = grant_command()
    del command_json["bucket"]
    command = decoded_command(encode(command_json)).command
    assert isinstance(command, GrantCredits)
    assert (command.kind, command.priority) == (BucketKind.PURCHASED, 40)


@pytest.mark.parametrize("amount", [0, -1, 1_000_000_000_001, 2.5])
def test_grant_amount_must_be_positive_and_bounded(amount: object) -> None:
    rejected = rejected_command(encode(grant_command(amount=amount)))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("grant.amount: ")


def test_unknown_grant_field_is_schema_invalid_naming_the_field() -> None:
    rejected = rejected_command(encode(grant_command(colour="red")))
    assert (rejected.code, rejected.message) == (
        DeadLetterCode.SCHEMA_INVALID,
        "grant.colour: Extra inputs are not permitted",
    )


def test_grant_time_without_offset_is_schema_invalid() -> None:
    rejected = rejected_command(encode(grant_command(expires_at="2026-12-01T00:00:00")))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("grant.expires_at: ")


def test_adjustment_of_zero_is_rejected() -> None:
    rejected = rejected_command(encode(adjustment_command(amount=0)))
    assert (rejected.code, rejected.message) == (
        DeadLetterCode.SCHEMA_INVALID,
        "amount: an adjustment must not be 0",
    )


def test_adjustment_decodes_signed_amount() -> None:
    assert decoded_command(encode(adjustment_command())).command == AdjustBalance(
        account_id=ACCOUNT,
        command_id="adj_1",
        amount=-5,
        reason="correction",
        occurred_at=datetime(2026, 11, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize("value", [b"{", b"", None])
def test_unparseable_command_is_malformed_json(value: bytes | None) -> None:
    assert rejected_command(value).code is DeadLetterCode.MALFORMED_JSON


@pytest.mark.parametrize("command_type", ["void", None])
def test_command_of_unknown_or_missing_type_is_schema_invalid(command_type: str | None) -> None:
    payload = adjustment_command(type=command_type)
    if command_type is None:
        del payload["type"]
    assert rejected_command(encode(payload)).code is DeadLetterCode.SCHEMA_INVALID


def test_command_keyed_by_another_account_is_key_mismatch() -> None:
    rejected = rejected_command(encode(grant_command()), key=b"acct_43")
    assert rejected.code is DeadLetterCode.KEY_MISMATCH


# --- U+0000, which Postgres text cannot hold ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'"endpoint": "POST /a\\u0000b"', b'"x\\u0000": 1', b'"key_id": "\\\\\\u0000"'],
)
def test_an_escaped_nul_anywhere_is_schema_invalid(raw: bytes) -> None:
    value = encode(usage_event())[:-1] + b", " + raw + b"}"
    assert rejected_usage(value).code is DeadLetterCode.SCHEMA_INVALID


def test_an_escaped_backslash_before_u0000_is_plain_text() -> None:
    decoded = decoded_usage(encode(usage_event(endpoint="POST /a\\u0000b")))
    assert isinstance(decoded.command, ConsumeUsage)
    assert decoded.command.endpoint == "POST /a\\u0000b"


@pytest.mark.parametrize("instant", [0, "0", 1.7e9, "1700000000", "yesterday"])
def test_instants_are_iso_text_never_unix_timestamps(instant: object) -> None:
    assert rejected_usage(encode(usage_event(occurred_at=instant))).code is (
        DeadLetterCode.SCHEMA_INVALID
    )
    grant = encode(grant_command(occurred_at=instant))
    assert rejected_command(grant).code is DeadLetterCode.SCHEMA_INVALID


# --- event-time skew bound ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead_s", "accepted"),
    [(-86_400 * 30, True), (0, True), (300, True), (301, False), (86_400 * 365, False)],
)
def test_events_beyond_the_future_skew_bound_are_dead_lettered(
    ahead_s: int, accepted: bool
) -> None:
    occurred_at = LOG_TIME + timedelta(seconds=ahead_s)
    decoded = decoded_usage(encode(usage_event(occurred_at=occurred_at.isoformat())))
    result = beyond_future_skew(decoded, LOG_TIME, max_future_skew_s=300)
    if accepted:
        assert result is decoded
    else:
        assert isinstance(result, Rejected)
        assert result.code is DeadLetterCode.OCCURRED_IN_FUTURE


def test_the_skew_bound_applies_to_commands_and_leaves_rejections_alone() -> None:
    future = (LOG_TIME + timedelta(days=1)).isoformat()
    command = decoded_command(encode(grant_command(occurred_at=future)))
    rejected = beyond_future_skew(command, LOG_TIME, max_future_skew_s=300)
    assert isinstance(rejected, Rejected)
    assert rejected.code is DeadLetterCode.OCCURRED_IN_FUTURE
    malformed = rejected_usage(b"{")
    assert beyond_future_skew(malformed, LOG_TIME, max_future_skew_s=0) is malformed


# --- payload hash --------------------------------------------------------------------------------


def test_payload_hash_ignores_whitespace_and_key_order() -> None:
    event = usage_event()
    compact = json.dumps(event, separators=(",", ":")).encode()
    spaced = json.dumps(dict(reversed(list(event.items()))), indent=4).encode()
    assert compact != spaced
    assert decoded_usage(compact).payload_sha256 == decoded_usage(spaced).payload_sha256


def test_payload_hash_ignores_how_utc_is_spelled() -> None:
    spellings = ["2026-11-21T10:00:00Z", "2026-11-21T10:00:00+00:00", "2026-11-21T10:00:00.000Z"]
    digests = {
        decoded_usage(encode(usage_event(occurred_at=at))).payload_sha256 for at in spellings
    }
    assert len(digests) == 1


def test_retry_writing_the_same_instant_in_another_offset_is_a_duplicate_not_a_reuse() -> None:
    # Same event, time written in +01:00 instead of Z: decoding normalises both to the same
    # command (the ledger would store the same UTC time), so it is the same payload, not a reuse.
    first = decoded_usage(encode(usage_event(occurred_at="2026-11-21T10:00:00Z")))
    retry = encode(usage_event(occurred_at="2026-11-21T11:00:00+01:00"))
    assert decoded_usage(retry).command == first.command
    plan = plan_batch([usage_record(retry)], fresh(), {seen_key(first): first.payload_sha256})
    assert [d.code for d in plan.dead_letters] == []
    assert plan.duplicates == 1


def test_payload_hash_changes_with_any_value() -> None:
    base = decoded_usage(encode(usage_event())).payload_sha256
    for change in ({"credits": 2}, {"status_code": 500}, {"latency_ms": 88}, {"key_id": None}):
        assert decoded_usage(encode(usage_event(**change))).payload_sha256 != base


# --- plan_batch --------------------------------------------------------------------------------


def test_plan_applies_records_in_order_continuing_the_loaded_state() -> None:
    grant = command_record(encode(grant_command(amount=10)), offset=0)
    plan = plan_batch([grant], fresh(), {})
    usage = usage_record(encode(usage_event(credits=3)), offset=1)
    second = plan_batch([usage], plan.states, {})
    assert [(e.seq, e.delta, e.balance_after) for e in second.entries] == [(2, -3, 7)]
    assert second.states[ACCOUNT].balance == 7
    assert [(p.kind, p.idempotency_id, p.first_seq) for p in second.processed] == [
        (IdKind.REQUEST, "req_1", 2)
    ]
    assert [e.recorded_at for e in second.entries] == [log_time(1)]


def test_plan_does_not_mutate_the_states_it_is_given() -> None:
    states = fresh()
    plan_batch([usage_record(encode(usage_event()))], states, {})
    assert states == fresh()


def test_same_request_id_and_payload_twice_in_a_batch_is_one_duplicate() -> None:
    value = encode(usage_event(credits=2))
    plan = plan_batch([usage_record(value, 0), usage_record(value, 1)], fresh(), {})
    assert [(e.seq, e.delta) for e in plan.entries] == [(1, -2)]
    assert plan.duplicates == 1
    assert len(plan.processed) == 1
    assert plan.dead_letters == []


def test_request_already_seen_with_same_payload_writes_nothing() -> None:
    value = encode(usage_event(credits=2))
    decoded = decoded_usage(value)
    plan = plan_batch([usage_record(value)], fresh(), {seen_key(decoded): decoded.payload_sha256})
    assert plan.entries == []
    assert plan.processed == []
    assert plan.duplicates == 1
    assert plan.dead_letters == []
    assert plan.states == fresh()


def test_reformatted_retry_of_a_seen_request_is_a_duplicate_not_a_reuse() -> None:
    event = usage_event()
    first = decoded_usage(json.dumps(event).encode())
    retry = json.dumps(dict(sorted(event.items())), indent=2).encode()
    plan = plan_batch([usage_record(retry)], fresh(), {seen_key(first): first.payload_sha256})
    assert (plan.duplicates, plan.entries, plan.dead_letters) == (1, [], [])


def test_same_request_id_with_another_payload_in_a_batch_is_request_id_reused() -> None:
    first = encode(usage_event(credits=2))
    reused = (
        b'{"request_id":"req_1","account_id":"acct_42","endpoint":"E","status_code":200,'
        b'"occurred_at":"2026-11-21T10:00:00Z","credits":9}'
    )
    plan = plan_batch([usage_record(first, 0), usage_record(reused, 1)], fresh(), {})
    assert [e.delta for e in plan.entries] == [-2]
    assert plan.duplicates == 0
    (dead,) = plan.dead_letters
    assert dead.code is DeadLetterCode.REQUEST_ID_REUSED
    assert dead.message == "request id 'req_1' was used with another payload"
    assert dead.record.value == reused
    assert (dead.record.key, dead.record.offset, dead.record.topic) == (KEY, 1, USAGE_TOPIC)
    assert dead.record.headers == (("trace", b"t-1"),)
    assert dead.account_id == ACCOUNT
    assert plan.states[ACCOUNT].balance == -2


def test_request_seen_earlier_with_another_payload_is_request_id_reused() -> None:
    earlier = decoded_usage(encode(usage_event(credits=5)))
    value = encode(usage_event(credits=2))
    plan = plan_batch([usage_record(value)], fresh(), {seen_key(earlier): earlier.payload_sha256})
    assert plan.entries == []
    assert [(d.code, d.record.value) for d in plan.dead_letters] == [
        (DeadLetterCode.REQUEST_ID_REUSED, value)
    ]


def test_same_command_id_with_another_payload_is_command_id_reused() -> None:
    first = encode(grant_command(amount=10))
    reused = encode(grant_command(amount=11))
    plan = plan_batch([command_record(first, 0), command_record(reused, 1)], fresh(), {})
    assert [e.delta for e in plan.entries] == [10]
    (dead,) = plan.dead_letters
    assert dead.code is DeadLetterCode.COMMAND_ID_REUSED
    assert dead.message == "command id 'cmd_1' was used with another payload"
    assert dead.record.value == reused


def test_same_command_id_and_payload_is_a_duplicate() -> None:
    value = encode(adjustment_command())
    plan = plan_batch([command_record(value, 0), command_record(value, 1)], fresh(), {})
    assert ([e.delta for e in plan.entries], plan.duplicates) == ([-5], 1)


def test_idempotency_ids_are_per_account() -> None:
    ours = encode(usage_event(credits=1))
    theirs = encode(usage_event(account_id="acct_43", credits=4))
    plan = plan_batch(
        [usage_record(ours, 0), usage_record(theirs, 1, key=b"acct_43")],
        fresh(ACCOUNT, "acct_43"),
        {},
    )
    assert [(e.account_id, e.seq, e.delta) for e in plan.entries] == [
        (ACCOUNT, 1, -1),
        ("acct_43", 1, -4),
    ]
    assert (plan.duplicates, plan.dead_letters) == (0, [])


def test_request_ids_and_command_ids_do_not_collide() -> None:
    usage = encode(usage_event(request_id="same", credits=1))
    command = encode(adjustment_command(command_id="same", amount=3))
    plan = plan_batch([usage_record(usage, 0), command_record(command, 1)], fresh(), {})
    assert [e.delta for e in plan.entries] == [-1, 3]
    assert (plan.duplicates, plan.dead_letters) == (0, [])


def test_free_call_is_processed_without_entries_and_its_retry_is_a_duplicate() -> None:
    value = encode(usage_event(credits=0))
    plan = plan_batch([usage_record(value, 0), usage_record(value, 1)], fresh(), {})
    assert plan.entries == []
    assert [(p.idempotency_id, p.first_seq) for p in plan.processed] == [("req_1", None)]
    assert plan.duplicates == 1


def test_failed_call_records_the_seq_of_its_first_entry() -> None:
    grant = command_record(encode(grant_command(amount=10)), 0)
    failed = usage_record(encode(usage_event(credits=3, status_code=503)), 1)
    plan = plan_batch([grant, failed], fresh(), {})
    assert [(e.seq, e.reason.value, e.delta) for e in plan.entries] == [
        (1, "grant", 10),
        (2, "consume", -3),
        (3, "refund", 3),
    ]
    assert [p.first_seq for p in plan.processed] == [1, 2]


@pytest.mark.parametrize(
    ("value", "key", "code"),
    [
        (b"{oops", KEY, DeadLetterCode.MALFORMED_JSON),
        (encode(usage_event(status_code="200")), KEY, DeadLetterCode.SCHEMA_INVALID),
        (encode(usage_event()), b"acct_43", DeadLetterCode.KEY_MISMATCH),
    ],
)
def test_rejected_records_become_dead_letters_with_the_original_bytes(
    value: bytes, key: bytes, code: DeadLetterCode
) -> None:
    record = usage_record(value, offset=7, key=key)
    plan = plan_batch([record], fresh(), {})
    (dead,) = plan.dead_letters
    assert dead.code is code
    assert dead.record is record
    assert dead.record.value == value
    assert dead.account_id == key.decode()
    assert (plan.entries, plan.processed, plan.duplicates) == ([], [], 0)


def test_a_rejected_record_does_not_claim_its_request_id() -> None:
    bad = usage_record(encode(usage_event(status_code="200")), 0)
    good = usage_record(encode(usage_event()), 1)
    plan = plan_batch([bad, good], fresh(), {})
    assert [e.delta for e in plan.entries] == [-1]
    assert len(plan.dead_letters) == 1


def test_dead_letter_account_of_an_unkeyed_undecodable_record_is_empty() -> None:
    plan = plan_batch([usage_record(b"nope", key=None)], fresh(), {})
    assert plan.dead_letters[0].account_id == ""


# --- captures claim their request id ---------------------------------------------------------


def hold_command(**changes: object) -> dict[str, object]:
    command: dict[str, object] = {
        "type": "hold",
        "command_id": "hold_cmd_1",
        "account_id": ACCOUNT,
        "occurred_at": "2026-11-21T09:00:00Z",
        "hold_id": "h1",
        "amount": 5,
        "expires_at": "2026-11-22T00:00:00Z",
    }
    command.update(changes)
    return command


def capture_command(**changes: object) -> dict[str, object]:
    command: dict[str, object] = {
        "type": "capture",
        "command_id": "capture_cmd_1",
        "account_id": ACCOUNT,
        "occurred_at": "2026-11-21T09:30:00Z",
        "hold_id": "h1",
        "amount": 3,
        "request_id": "req_1",
        "endpoint": "POST /v1/scanner/scan",
    }
    command.update(changes)
    return command


def held() -> list[InputRecord]:
    return [
        command_record(encode(grant_command(amount=10)), 0),
        command_record(encode(hold_command()), 1),
    ]


def test_usage_reusing_a_captured_request_id_is_request_id_reused() -> None:
    usage = encode(usage_event())
    plan = plan_batch(
        [*held(), command_record(encode(capture_command()), 2), usage_record(usage, 3)], fresh(), {}
    )
    assert [(d.code, d.record.value) for d in plan.dead_letters] == [
        (DeadLetterCode.REQUEST_ID_REUSED, usage)
    ]
    assert [(p.kind, p.idempotency_id) for p in plan.processed][-2:] == [
        (IdKind.COMMAND, "capture_cmd_1"),
        (IdKind.REQUEST, "req_1"),
    ]


def test_capture_reusing_a_consumed_request_id_is_request_id_reused() -> None:
    # The capture's own command id is new; what it reuses is the request id of a usage event.
    capture = encode(capture_command())
    plan = plan_batch(
        [*held(), usage_record(encode(usage_event()), 2), command_record(capture, 3)], fresh(), {}
    )
    (dead,) = plan.dead_letters
    assert dead.record.value == capture
    assert dead.code is DeadLetterCode.REQUEST_ID_REUSED
    assert "req_1" in dead.message
