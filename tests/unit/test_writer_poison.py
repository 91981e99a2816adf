"""Poison cannot wedge a partition: every parsed field is bounded at decode, and a record whose
decision raises anyway is dead-lettered alone (`unprocessable`), its neighbours still charged."""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.common import EARLIEST_INSTANT, LATEST_INSTANT, UtcTime
from services.core import run as core_run
from services.core.model import AccountState, Command, ConsumeUsage, EntryReason, Event
from services.writer import plan as plan_module
from services.writer.decoding import DeadLetterCode, Decoded, IdKind
from services.writer.plan import BatchPlan, InputRecord, SeenKey, plan_batch
from tests.unit.test_writer_plan import (
    ACCOUNT,
    KEY,
    adjustment_command,
    command_record,
    decoded_command,
    encode,
    fresh,
    grant_command,
    rejected_command,
    rejected_usage,
    usage_event,
    usage_record,
)

OTHER = "acct_other"
BEYOND_UTC = [
    "9999-12-31T23:59:59-23:59",  # year 10000 in UTC
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31T00:00:00Z",  # inside datetime, but no day of headroom
    "0001-01-01T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999+00:00",
]
EDGES = ["0001-01-02T00:00:00Z", "9999-12-30T23:59:59.999999Z", "9999-12-31T22:59:59+23:00"]
UTC_TIME: TypeAdapter[datetime] = TypeAdapter(UtcTime)


# --- instants are bounded at the contract type ---------------------------------------------------


@pytest.mark.parametrize("text", BEYOND_UTC)
def test_an_instant_outside_what_utc_holds_is_refused_by_the_contract_type(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        UTC_TIME.validate_python(text)
    (error,) = refused.value.errors()
    assert error["type"] == "datetime_out_of_range"
    assert "0001-01-02T00:00:00Z" in error["msg"] and "9999-12-30" in error["msg"]


@pytest.mark.parametrize("text", EDGES)
def test_the_edges_of_the_range_are_accepted_and_convert_to_utc(text: str) -> None:
    moment = UTC_TIME.validate_python(text)
    assert EARLIEST_INSTANT <= moment.astimezone(UTC) <= LATEST_INSTANT
    assert moment.astimezone(UTC) + timedelta(days=1) > moment  # a day of arithmetic fits


@pytest.mark.parametrize("text", BEYOND_UTC)
def test_usage_occurred_at_beyond_utc_is_schema_invalid(text: str) -> None:
    rejected = rejected_usage(encode(usage_event(occurred_at=text)))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith("occurred_at: the instant must lie between")


@pytest.mark.parametrize("text", BEYOND_UTC)
@pytest.mark.parametrize(
    ("command", "field"),
    [
        (grant_command(), "occurred_at"),
        (grant_command(), "effective_at"),
        (grant_command(), "expires_at"),
        (adjustment_command(), "occurred_at"),
        ({"type": "hold", "command_id": "h", "account_id": ACCOUNT, "hold_id": "h1",
          "amount": 1, "occurred_at": "2026-11-01T00:00:00Z",
          "expires_at": "2026-11-02T00:00:00Z"}, "expires_at"),
        ({"type": "expire", "command_id": "e", "account_id": ACCOUNT,
          "occurred_at": "2026-11-01T00:00:00Z"}, "occurred_at"),
    ],
)  # fmt: skip
def test_command_instants_beyond_utc_are_schema_invalid(
    command: dict[str, object], field: str, text: str
) -> None:
    rejected = rejected_command(encode({**command, field: text}))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert f".{field}: the instant must lie between" in rejected.message


def test_a_grant_expiring_at_the_latest_instant_decodes_and_plans() -> None:
    value = encode(grant_command(expires_at="9999-12-30T23:59:59.999999Z", amount=5))
    decoded = decoded_command(value)
    plan = plan_batch([command_record(value)], fresh(), {})
    assert decoded.command.occurred_at.tzinfo is not None
    assert [(e.reason, e.delta) for e in plan.entries] == [(EntryReason.GRANT, 5)]


# --- every integer the writer parses is bounded -------------------------------------------------

HUGE = [2**63, -(2**63) - 1, 10**30]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("field", ["credits", "latency_ms", "status_code"])
def test_usage_integers_are_bounded(field: str, value: int) -> None:
    rejected = rejected_usage(encode(usage_event(**{field: value})))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert rejected.message.startswith(f"{field}: ")


SETTINGS = {"type": "account_settings", "command_id": "s", "account_id": ACCOUNT,
            "occurred_at": "2026-11-01T00:00:00Z"}  # fmt: skip
RELOAD = {"threshold": 1, "amount": 1, "max_per_day": 1}


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("command", "path"),
    [
        (grant_command(), ("amount",)),
        (grant_command(), ("priority",)),
        (adjustment_command(), ("amount",)),
        ({"type": "refund", "command_id": "r", "account_id": ACCOUNT, "request_id": "q",
          "occurred_at": "2026-11-01T00:00:00Z"}, ("amount",)),
        ({"type": "hold", "command_id": "h", "account_id": ACCOUNT, "hold_id": "h1",
          "amount": 1, "occurred_at": "2026-11-01T00:00:00Z",
          "expires_at": "2026-11-02T00:00:00Z"}, ("amount",)),
        ({"type": "capture", "command_id": "c", "account_id": ACCOUNT, "hold_id": "h1",
          "request_id": "q", "endpoint": "e", "occurred_at": "2026-11-01T00:00:00Z"},
         ("amount",)),
        (SETTINGS, ("low_balance_threshold",)),
        (SETTINGS, ("credit_limit",)),
        ({**SETTINGS, "auto_reload": RELOAD}, ("auto_reload", "threshold")),
        ({**SETTINGS, "auto_reload": RELOAD}, ("auto_reload", "amount")),
        ({**SETTINGS, "auto_reload": RELOAD}, ("auto_reload", "max_per_day")),
    ],
)  # fmt: skip
def test_command_integers_are_bounded(
    command: dict[str, Any], path: tuple[str, ...], value: int
) -> None:
    command = json.loads(json.dumps(command))
    target = command
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    rejected = rejected_command(encode(command))
    assert rejected.code is DeadLetterCode.SCHEMA_INVALID
    assert f"{'.'.join(path)}: " in rejected.message


# --- a record whose decision raises is dead-lettered alone ---------------------------------------


class Poisoned(Exception):
    pass


def poison_when(monkeypatch: pytest.MonkeyPatch, is_poison: Any) -> None:
    """`decide_run` as the writer calls it, raising as soon as it meets a poison command."""

    def deciding(
        state: AccountState, commands: Sequence[tuple[Command, datetime]]
    ) -> tuple[list[tuple[Event, ...]], AccountState]:
        for command, _ in commands:
            if is_poison(command):
                raise Poisoned(f"cannot decide {command.occurred_at:%Y}")
        return core_run.decide_run(state, commands)

    monkeypatch.setattr(plan_module, "decide_run", deciding)


def poison_request(request_id: str) -> Any:
    return lambda c: isinstance(c, ConsumeUsage) and c.request_id == request_id


def usage(request_id: str, offset: int, account: str = ACCOUNT, **changes: object) -> InputRecord:
    value = encode(usage_event(request_id=request_id, account_id=account, **changes))
    return usage_record(value, offset=offset, key=account.encode())


def charged(plan: BatchPlan, account: str = ACCOUNT) -> list[tuple[int, str, int]]:
    return [(e.seq, e.source, e.delta) for e in plan.entries if e.account_id == account]


def test_a_record_whose_decision_raises_is_dead_lettered_and_its_neighbours_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_when(monkeypatch, poison_request("req_p"))
    records = [
        usage("req_1", 0, credits=2),
        usage("req_o", 1, account=OTHER, credits=7),
        usage("req_p", 2, credits=3),
        usage("req_3", 3, credits=4),
    ]
    plan = plan_batch(records, fresh(ACCOUNT, OTHER), {})
    assert charged(plan) == [(1, "request:req_1", -2), (2, "request:req_3", -4)]
    assert charged(plan, OTHER) == [(1, "request:req_o", -7)]
    (dead,) = plan.dead_letters
    assert dead.record is records[2]
    assert dead.code is DeadLetterCode.UNPROCESSABLE
    assert dead.code.value == "unprocessable"
    assert dead.message == "deciding the record failed: Poisoned: cannot decide 2026"
    assert dead.account_id == ACCOUNT
    assert [p.idempotency_id for p in plan.processed] == ["req_1", "req_3", "req_o"]
    assert plan.states[ACCOUNT].balance == -6
    assert plan.states[ACCOUNT].seq == 2


def test_without_poison_the_plan_is_what_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [usage("req_1", 0, credits=2), usage("req_p", 1, credits=3)]
    before = plan_batch(records, fresh(), {})
    poison_when(monkeypatch, lambda _: False)
    assert plan_batch(records, fresh(), {}) == before


def test_a_poison_claims_no_id_so_the_outcome_does_not_depend_on_batch_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same request id again, with another payload: had the poison claimed its id, this would
    # be request-id-reused within the batch but applied in a later one.
    poison_when(monkeypatch, lambda c: isinstance(c, ConsumeUsage) and c.credits == 3)
    records = [
        usage("req_1", 0, credits=1),
        usage("req_p", 1, credits=3),
        usage("req_p", 2, credits=5),
        usage("req_p", 3, credits=3),  # the poison's own retry: poison again
    ]
    whole = plan_batch(records, fresh(), {})
    assert charged(whole) == [(1, "request:req_1", -1), (2, "request:req_p", -5)]
    assert [(d.record.offset, d.code) for d in whole.dead_letters] == [
        (1, DeadLetterCode.UNPROCESSABLE),
        (3, DeadLetterCode.REQUEST_ID_REUSED),  # req_p now names the 5-credit call
    ]
    states, pieces = fresh(), []
    seen: dict[SeenKey, bytes] = {}
    for record in records:
        piece = plan_batch([record], states, seen)
        states = piece.states
        seen.update({(p.kind, p.account_id, p.idempotency_id): p.payload_sha256
                     for p in piece.processed})  # fmt: skip
        pieces.append(piece)
    assert [c for p in pieces for c in charged(p)] == charged(whole)
    assert [(d.record.offset, d.code) for p in pieces for d in p.dead_letters] == [
        (d.record.offset, d.code) for d in whole.dead_letters
    ]


def test_several_poisons_in_one_run_and_across_accounts_are_each_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_when(monkeypatch, lambda c: isinstance(c, ConsumeUsage) and c.credits == 9)
    records = [
        usage(f"req_{n}", n, account=(ACCOUNT, OTHER)[n % 2], credits=9 if n % 3 == 0 else 1)
        for n in range(12)
    ]
    plan = plan_batch(records, fresh(ACCOUNT, OTHER), {})
    assert [d.record.offset for d in plan.dead_letters] == [0, 3, 6, 9]
    assert {d.code for d in plan.dead_letters} == {DeadLetterCode.UNPROCESSABLE}
    assert [s for _, s, _ in charged(plan)] == ["request:req_2", "request:req_4",
                                                "request:req_8", "request:req_10"]  # fmt: skip
    assert [seq for seq, _, _ in charged(plan, OTHER)] == [1, 2, 3, 4]


def test_a_poison_command_leaves_the_usage_behind_it_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_when(monkeypatch, lambda c: getattr(c, "command_id", None) == "bad_grant")
    records = [
        command_record(encode(grant_command(command_id="good_grant", amount=10)), offset=0),
        command_record(encode(grant_command(command_id="bad_grant", amount=50)), offset=1),
        usage("req_1", 2, credits=4),
    ]
    plan = plan_batch(records, fresh(), {})
    assert [(e.reason, e.delta, e.balance_after) for e in plan.entries] == [
        (EntryReason.GRANT, 10, 10),
        (EntryReason.CONSUME, -4, 6),
    ]
    assert [(d.record.offset, d.code) for d in plan.dead_letters] == [
        (1, DeadLetterCode.UNPROCESSABLE)
    ]
    assert (IdKind.COMMAND, "bad_grant") not in {(p.kind, p.idempotency_id) for p in plan.processed}


def test_a_fold_that_fails_though_each_record_decides_alone_still_charges_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fold_fails(
        state: AccountState, commands: Sequence[tuple[Command, datetime]]
    ) -> tuple[list[tuple[Event, ...]], AccountState]:
        if len(commands) > 1:
            raise RuntimeError("a bug of the fold")
        return core_run.decide_run(state, commands)

    records = [usage(f"req_{n}", n, credits=n + 1) for n in range(3)]
    expected = plan_batch(records, fresh(), {})
    monkeypatch.setattr(plan_module, "decide_run", fold_fails)
    assert plan_batch(records, fresh(), {}) == expected


# --- fuzz: generated records through decode and plan ---------------------------------------------

EXTREME_INSTANTS = st.sampled_from(
    [*BEYOND_UTC, *EDGES, "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
     "2026-02-30T00:00:00Z", "2026-11-21T10:00:00+24:00", "2026-11-21T10:00:00-99:99",
     "2026-11-21T25:61:61Z", "2026-11-21T10:00:00.9999999999Z", "9999-12-31T23:59:59.999999Z"]
)  # fmt: skip
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
)
INSTANTS = EXTREME_INSTANTS | st.builds(
    lambda moment, offset: moment.isoformat(timespec="seconds") + offset,
    st.datetimes(),  # naive: the offset is drawn apart, from -23:59 to +23:59
    OFFSETS,
)
NUMBERS = st.integers(-(2**80), 2**80) | st.sampled_from(
    [0, -1, 2**53, 2**63 - 1, 2**63, -(2**63), 10**12, 10**12 + 1, 86_400_001]
) | st.floats(allow_nan=False) | st.booleans()  # fmt: skip
ODD_TEXT = st.text(max_size=40) | st.sampled_from(
    ["", "\u0000", "\\u0000", "\ufeff", "\u202e", "é" * 200, "😀", "\udfff", "a" * 1000, " "]
)
LEAVES = st.none() | NUMBERS | ODD_TEXT | INSTANTS
NESTED = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=12,
)
FIELDS = ["request_id", "account_id", "key_id", "endpoint", "status_code", "occurred_at",
          "credits", "latency_ms", "type", "command_id", "amount", "name", "metadata", "bucket",
          "priority", "source", "effective_at", "expires_at", "applies_to", "reason",
          "allow_negative", "grant_id", "hold_id", "low_balance_threshold", "auto_reload",
          "credit_limit"]  # fmt: skip


COMMAND_FIELDS: dict[str, dict[str, Any]] = {
    "grant": {"amount": 5, "bucket": "gift", "expires_at": "2026-11-22T00:00:00Z"},
    "adjustment": {"amount": -3, "reason": "fuzz"},
    "refund": {"request_id": "fuzz_req"},
    "void_grant": {"grant_id": "g1"},
    "hold": {"hold_id": "h1", "amount": 2, "expires_at": "2026-11-22T00:00:00Z"},
    "capture": {"hold_id": "h1", "request_id": "fuzz_req", "endpoint": "POST /v1/x"},
    "release": {"hold_id": "h1"},
    "account_settings": {"low_balance_threshold": 3, "credit_limit": 10,
                         "auto_reload": {"threshold": 1, "amount": 5, "max_per_day": 2}},
    "expire": {},
}  # fmt: skip


def _valid_base(kind: str) -> dict[str, Any]:
    if kind == "usage":
        return usage_event(request_id="fuzz")
    return {"type": kind, "command_id": f"fuzz_{kind}", "account_id": ACCOUNT,
            "occurred_at": "2026-11-21T09:00:00Z", **COMMAND_FIELDS[kind]}  # fmt: skip


@st.composite
def fuzz_record(draw: st.DrawFn) -> tuple[str, bytes]:
    """(topic kind, raw bytes): a valid record with some fields replaced, or raw junk."""
    kind = draw(st.sampled_from(["usage", *COMMAND_FIELDS]))
    shape = draw(st.sampled_from(["mutated"] * 6 + ["raw", "deep"]))
    if shape == "raw":
        return kind, draw(st.binary(max_size=64))
    if shape == "deep":
        depth = draw(st.integers(1, 5000))
        return kind, b'{"request_id":' + b"[" * depth + b"]" * depth + b"}"
    record = _valid_base(kind)
    names = [*record] if draw(st.booleans()) else FIELDS  # mostly fields the type has
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        record[name] = draw(INSTANTS if name.endswith("_at") else NESTED)
    if draw(st.booleans()):
        record[draw(ODD_TEXT)] = draw(NESTED)
    if draw(st.booleans()) and isinstance(record.get("account_id"), str):
        record["account_id"] = ACCOUNT  # mostly the account whose calls follow
    return kind, json.dumps(record, ensure_ascii=draw(st.booleans())).encode(
        "utf-8", errors="surrogatepass"
    )


def _fuzz_input(kind: str, value: bytes, offset: int) -> InputRecord:
    if kind == "usage":
        return usage_record(value, offset=offset, key=KEY if b"acct_42" in value else None)
    return command_record(value, offset=offset, key=None)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(fuzz_record(), min_size=1, max_size=6), st.sampled_from(string.digits))
def test_fuzzed_records_never_stop_the_plan_and_calls_behind_them_are_charged(
    poison: list[tuple[str, bytes]], tag: str
) -> None:
    """Whatever comes first (bounds broken, wrong types, odd unicode, deep nesting, junk), decode
    and plan answer, and the valid calls behind it, of its account and another, are applied."""
    records = [_fuzz_input(kind, value, n) for n, (kind, value) in enumerate(poison)]
    behind = [usage(f"behind_{tag}", len(records), credits=1),
              usage(f"behind_{tag}", len(records) + 1, account=OTHER, credits=2)]  # fmt: skip
    records += behind
    accounts = {r.decoded.account_id for r in records if isinstance(r.decoded, Decoded)}
    plan = plan_batch(records, fresh(*accounts), {})
    processed = {(p.account_id, p.idempotency_id) for p in plan.processed}
    assert (ACCOUNT, f"behind_{tag}") in processed
    assert charged(plan, OTHER) == [(1, f"request:behind_{tag}", -2)]
    dead = {d.record.offset for d in plan.dead_letters}
    assert dead.isdisjoint({r.offset for r in behind})
    for letter in plan.dead_letters:
        assert "\x00" not in letter.message and len(letter.message) <= 500
