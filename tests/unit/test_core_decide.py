"""Examples of the core rules: drawdown order, overdraft, refunds of failed calls, the chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.core import decide, evolve, evolve_all
from services.core.errors import LedgerGap
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    AdjustBalance,
    AlertKind,
    AlertRaised,
    Bucket,
    BucketKind,
    ChangeSettings,
    Command,
    CommandRejected,
    ConsumeUsage,
    EntryReason,
    Event,
    GrantCredits,
    LedgerEntry,
    RefundRequest,
)

ACCOUNT = "acct_42"
SCAN = "POST /v1/scanner/scan"
DEEP_SCAN = "POST /v1/scanner/deep-scan"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
METADATA_200 = {"endpoint": SCAN, "key_id": "key_7", "status_code": 200}


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def grant(
    command_id: str,
    amount: int,
    *,
    kind: BucketKind = BucketKind.PURCHASED,
    priority: int | None = None,
    effective_at: datetime = T0,
    expires_at: datetime | None = None,
    applies_to: tuple[str, ...] | None = None,
    source: str = "",
    name: str = "",
) -> GrantCredits:
    return GrantCredits(
        account_id=ACCOUNT,
        command_id=command_id,
        amount=amount,
        kind=kind,
        priority=DEFAULT_PRIORITY[kind] if priority is None else priority,
        source=source,
        effective_at=effective_at,
        expires_at=expires_at,
        occurred_at=T0,
        applies_to=applies_to,
        name=name,
    )


def usage(
    request_id: str,
    credits: int,
    *,
    status_code: int = 200,
    endpoint: str = SCAN,
    occurred_at: datetime | None = None,
) -> ConsumeUsage:
    return ConsumeUsage(
        account_id=ACCOUNT,
        request_id=request_id,
        endpoint=endpoint,
        status_code=status_code,
        credits=credits,
        occurred_at=day(1) if occurred_at is None else occurred_at,
        key_id="key_7",
    )


def adjust(command_id: str, amount: int, reason: str = "goodwill") -> AdjustBalance:
    return AdjustBalance(
        account_id=ACCOUNT, command_id=command_id, amount=amount, reason=reason, occurred_at=day(2)
    )


def credit_limit(limit: int) -> ChangeSettings:
    return ChangeSettings(
        account_id=ACCOUNT, command_id=f"limit_{limit}", occurred_at=T0, credit_limit=limit
    )


def entries_of(events: Iterable[Event]) -> list[LedgerEntry]:
    return [e for e in events if isinstance(e, LedgerEntry)]


def decide_entries(state: AccountState, command: Command) -> list[LedgerEntry]:
    return entries_of(decide(state, command, RECORDED_AT))


def run(
    commands: Sequence[Command], state: AccountState | None = None
) -> tuple[AccountState, list[LedgerEntry]]:
    """Fold decide + evolve, the way the writer does; returns the ledger entries only."""
    state = AccountState(ACCOUNT) if state is None else state
    entries: list[LedgerEntry] = []
    for command in commands:
        events = decide(state, command, RECORDED_AT)
        state = evolve_all(state, events)
        entries += entries_of(events)
    return state, entries


def after(*commands: Command) -> AccountState:
    return run(commands)[0]


def draws(entries: Sequence[LedgerEntry]) -> list[tuple[str, str | None, int]]:
    return [(e.reason.value, e.bucket_grant_id, e.delta) for e in entries]


def remaining(state: AccountState) -> dict[str, int]:
    return {b.grant_id: b.remaining for b in state.buckets}


# --- drawdown order -----------------------------------------------------------------------


def test_consume_draws_the_lowest_priority_bucket_first() -> None:
    state = after(
        grant("g_purchased", 10, kind=BucketKind.PURCHASED),
        grant("g_gift", 10, kind=BucketKind.GIFT),
        grant("g_sub", 10, kind=BucketKind.SUBSCRIPTION),
    )
    assert draws(decide_entries(state, usage("r1", 4))) == [("consume", "g_sub", -4)]


def test_default_priorities_put_subscription_first_gift_after_and_purchased_last() -> None:
    order = sorted(BucketKind, key=lambda kind: DEFAULT_PRIORITY[kind])
    assert order == [
        BucketKind.SUBSCRIPTION,
        BucketKind.PROMOTIONAL,
        BucketKind.GIFT,
        BucketKind.PURCHASED,
    ]


def test_explicit_priority_beats_bucket_kind() -> None:
    state = after(
        grant("g_sub", 10, kind=BucketKind.SUBSCRIPTION),
        grant("g_purchased", 10, kind=BucketKind.PURCHASED, priority=1),
    )
    assert draws(decide_entries(state, usage("r1", 3))) == [("consume", "g_purchased", -3)]


def test_equal_priority_draws_the_soonest_expiry_first_and_never_expiring_last() -> None:
    state = after(
        grant("g_never", 10, priority=5),
        grant("g_day30", 10, priority=5, expires_at=day(30)),
        grant("g_day10", 10, priority=5, expires_at=day(10)),
    )
    assert draws(decide_entries(state, usage("r1", 25))) == [
        ("consume", "g_day10", -10),
        ("consume", "g_day30", -10),
        ("consume", "g_never", -5),
    ]


def test_equal_priority_and_expiry_draws_the_oldest_grant_first() -> None:
    state = after(
        grant("g_first", 3, priority=5, expires_at=day(30)),
        grant("g_second", 3, priority=5, expires_at=day(30)),
        grant("g_third", 3, priority=5, expires_at=day(30)),
    )
    assert draws(decide_entries(state, usage("r1", 5))) == [
        ("consume", "g_first", -3),
        ("consume", "g_second", -2),
    ]


def test_priority_outranks_expiry() -> None:
    state = after(
        grant("g_soon_but_low_rank", 10, priority=50, expires_at=day(2)),
        grant("g_late_but_high_rank", 10, priority=5, expires_at=day(90)),
    )
    assert draws(decide_entries(state, usage("r1", 1))) == [("consume", "g_late_but_high_rank", -1)]


def test_consume_spanning_buckets_writes_one_entry_per_bucket_touched() -> None:
    state = after(
        grant("g_a", 3, priority=1),
        grant("g_b", 4, priority=2),
        grant("g_c", 10, priority=3),
        grant("g_d", 10, priority=4),
    )
    entries = decide_entries(state, usage("r1", 9))
    assert draws(entries) == [
        ("consume", "g_a", -3),
        ("consume", "g_b", -4),
        ("consume", "g_c", -2),
    ]
    assert [e.source for e in entries] == ["request:r1"] * 3
    assert [e.request_id for e in entries] == ["r1"] * 3
    assert [e.bucket_kind for e in entries] == [BucketKind.PURCHASED] * 3
    assert [dict(e.metadata) for e in entries] == [METADATA_200] * 3
    assert remaining(evolve_all(state, entries)) == {"g_a": 0, "g_b": 0, "g_c": 8, "g_d": 10}


def test_consume_skips_drained_buckets() -> None:
    state = after(grant("g_a", 2, priority=1), grant("g_b", 5, priority=2), usage("r1", 2))
    assert draws(decide_entries(state, usage("r2", 1))) == [("consume", "g_b", -1)]


# --- overdraft and the credit limit ----------------------------------------------------------


def test_credits_no_bucket_covers_are_one_owed_entry_without_bucket() -> None:
    state = after(credit_limit(100), grant("g_a", 3))
    entries = decide_entries(state, usage("r1", 5))
    assert draws(entries) == [("consume", "g_a", -3), ("consume", None, -2)]
    assert entries[-1].bucket_kind is None
    assert entries[-1].source == "request:r1"
    assert dict(entries[-1].metadata) == {**METADATA_200, "owed": 2}
    assert [e.balance_after for e in entries] == [0, -2]
    final = evolve_all(state, entries)
    assert (final.balance, remaining(final), final.overage) == (-2, {"g_a": 0}, 2)


def test_consume_without_any_grant_is_a_single_overdraft_entry() -> None:
    entries = decide_entries(after(credit_limit(10)), usage("r1", 7))
    assert draws(entries) == [("consume", None, -7)]
    assert (entries[0].seq, entries[0].balance_after) == (1, -7)


def test_beyond_the_credit_limit_the_whole_price_is_still_owed_and_alerted_once() -> None:
    state = after(credit_limit(4), grant("g_a", 3))
    events = decide(state, usage("r1", 10), RECORDED_AT)
    entries = entries_of(events)
    assert draws(entries) == [("consume", "g_a", -3), ("consume", None, -7)]
    assert entries[-1].metadata["owed"] == 7
    kinds = [e.kind for e in events if isinstance(e, AlertRaised)]
    assert AlertKind.CREDIT_LIMIT_EXCEEDED in kinds and AlertKind.OVERAGE in kinds
    state = evolve_all(state, events)
    assert (state.balance, state.overage) == (-7, 7)
    again = decide(state, usage("r2", 1), RECORDED_AT)
    assert not [e for e in again if isinstance(e, AlertRaised)], "once per crossing"


def test_with_the_default_credit_limit_what_no_bucket_covers_is_owed() -> None:
    entries = decide_entries(after(grant("g_a", 3)), usage("r1", 5))
    assert draws(entries) == [("consume", "g_a", -3), ("consume", None, -2)]
    assert entries[-1].metadata["owed"] == 2


def test_bucket_not_yet_effective_is_not_drawn() -> None:
    state = after(
        grant("g_next_month", 10, priority=1, effective_at=day(30)),
        grant("g_now", 10, priority=2),
    )
    assert draws(decide_entries(state, usage("r1", 4, occurred_at=day(29)))) == [
        ("consume", "g_now", -4)
    ]


def test_bucket_is_drawn_from_the_instant_it_becomes_effective() -> None:
    state = after(grant("g", 10, effective_at=day(5)))
    assert (state.balance, state.scheduled) == (0, 10)
    entries = decide_entries(state, usage("r1", 1, occurred_at=day(5)))
    assert draws(entries) == [("grant", "g", 10), ("consume", "g", -1)]
    assert entries[0].occurred_at == day(5)
    assert entries[0].metadata == {"activated": 10}


def test_bucket_is_drawn_until_just_before_it_expires() -> None:
    state = after(
        grant("g_expiring", 10, priority=1, expires_at=day(10)),
        grant("g_fallback", 10, priority=2),
    )
    just_before = usage("r1", 1, occurred_at=day(10) - timedelta(seconds=1))
    assert draws(decide_entries(state, just_before)) == [("consume", "g_expiring", -1)]


def test_expired_bucket_leaves_at_its_expiry_time_and_is_not_drawn() -> None:
    state = after(
        grant("g_expiring", 10, priority=1, expires_at=day(10)),
        grant("g_fallback", 10, priority=2),
    )
    entries = decide_entries(state, usage("r1", 1, occurred_at=day(12)))
    assert draws(entries) == [("expiry", "g_expiring", -10), ("consume", "g_fallback", -1)]
    assert entries[0].occurred_at == day(10)
    assert entries[0].source == "expiry:g_expiring"
    assert remaining(evolve_all(state, entries)) == {"g_fallback": 9}


def test_a_spent_bucket_closes_at_its_expiry_so_a_late_refund_comes_back_unbucketed() -> None:
    # Found by the independent model (tests/unit/test_money_model.py): a bucket spent before
    # its expiry used to stay open (no entry), so a late refund went into it and expired with
    # it, while a bucket with 1 credit left at expiry sent the same refund back unbucketed.
    for amount in (10, 11):
        state, entries = run([
            grant("g", amount, kind=BucketKind.GIFT, expires_at=day(5)),
            usage("r1", 10, occurred_at=day(1)),
            usage("free", 0, occurred_at=day(6)),  # event time passes the expiry
        ])  # fmt: skip
        assert (entries[-1].reason, entries[-1].delta) == (EntryReason.EXPIRY, 10 - amount)
        late = replace(refund("r1", None), occurred_at=day(2))
        final, refunds = run([late], state)
        assert [(e.reason, e.bucket_grant_id, e.delta) for e in refunds] == [
            (EntryReason.REFUND, None, 10)
        ]
        assert (final.balance, final.unbucketed) == (10, 10)


def test_only_expired_or_future_buckets_leaves_nothing_to_draw() -> None:
    state = after(
        credit_limit(50),
        grant("g_old", 10, expires_at=day(3)),
        grant("g_future", 10, effective_at=day(20)),
    )
    entries = decide_entries(state, usage("r1", 2, occurred_at=day(5)))
    assert draws(entries) == [("expiry", "g_old", -10), ("consume", None, -2)]


def test_applies_to_limits_a_bucket_to_its_endpoints() -> None:
    state = after(
        grant("g_deep_only", 10, priority=1, applies_to=(DEEP_SCAN,)),
        grant("g_any", 10, priority=2),
    )
    assert draws(decide_entries(state, usage("r1", 2, endpoint=SCAN))) == [("consume", "g_any", -2)]
    assert draws(decide_entries(state, usage("r2", 2, endpoint=DEEP_SCAN))) == [
        ("consume", "g_deep_only", -2)
    ]


# --- failed calls ----------------------------------------------------------------------------


def test_4xx_call_is_consumed_then_refunded_with_reason_client_error() -> None:
    state = after(grant("g", 10))
    entries = decide_entries(state, usage("r1", 3, status_code=404))
    assert draws(entries) == [("consume", "g", -3), ("refund", "g", 3)]
    consume, refund = entries
    assert (consume.source, refund.source) == ("request:r1", "refund:r1")
    assert dict(consume.metadata) == {"endpoint": SCAN, "key_id": "key_7", "status_code": 404}
    assert dict(refund.metadata) == {
        "endpoint": SCAN,
        "key_id": "key_7",
        "status_code": 404,
        "reason": "client_error",
        "consumed_at": consume.occurred_at.isoformat(),
        "refundable_after": 0,
    }
    assert [e.balance_after for e in entries] == [7, 10]
    assert remaining(evolve_all(state, entries)) == {"g": 10}


@pytest.mark.parametrize(
    ("status_code", "reason"),
    [(400, "client_error"), (499, "client_error"), (500, "server_error"), (503, "server_error")],
)
def test_failed_call_refund_reason_follows_status_class(status_code: int, reason: str) -> None:
    entries = decide_entries(after(grant("g", 10)), usage("r1", 2, status_code=status_code))
    assert [e.reason for e in entries] == [EntryReason.CONSUME, EntryReason.REFUND]
    assert entries[1].metadata["reason"] == reason
    assert entries[1].metadata["status_code"] == status_code


@pytest.mark.parametrize("status_code", [200, 201, 204, 302, 399])
def test_calls_below_400_are_charged_and_not_refunded(status_code: int) -> None:
    entries = decide_entries(after(grant("g", 10)), usage("r1", 2, status_code=status_code))
    assert draws(entries) == [("consume", "g", -2)]


def test_5xx_refund_returns_credits_to_the_same_buckets_including_overdraft() -> None:
    state = after(credit_limit(100), grant("g_a", 2, priority=1), grant("g_b", 5, priority=2))
    entries = decide_entries(state, usage("r1", 10, status_code=500))
    consumes = sorted((e.bucket_grant_id or "", e.delta) for e in entries[:3])
    refunds = sorted((e.bucket_grant_id or "", e.delta) for e in entries[3:])
    assert draws(entries[:3]) == [
        ("consume", "g_a", -2),
        ("consume", "g_b", -5),
        ("consume", None, -3),
    ]
    assert {e.reason for e in entries[3:]} == {EntryReason.REFUND}
    assert refunds == [(grant_id, -delta) for grant_id, delta in consumes]
    assert all(e.metadata["reason"] == "server_error" for e in entries[3:])
    assert entries[-1].balance_after == 7
    final = evolve_all(state, entries)
    assert (final.balance, remaining(final)) == (7, {"g_a": 2, "g_b": 5})


def test_failed_call_leaves_the_drawdown_order_unchanged_for_the_next_call() -> None:
    state = after(grant("g_a", 2, priority=1), grant("g_b", 5, priority=2))
    state, _ = run([usage("r1", 4, status_code=502)], state)
    assert draws(decide_entries(state, usage("r2", 3))) == [
        ("consume", "g_a", -2),
        ("consume", "g_b", -1),
    ]


def refund(request_id: str, amount: int | None, command_id: str = "rf_1") -> RefundRequest:
    return RefundRequest(ACCOUNT, command_id, request_id, amount, "goodwill", day(3))


def spread_consume() -> AccountState:
    """r1 drew 2 from g_a, 5 from g_b and 3 from no bucket."""
    return after(
        credit_limit(100),
        grant("g_a", 2, priority=1),
        grant("g_b", 5, priority=2),
        usage("r1", 10),
    )


def rejections(events: Iterable[Event]) -> list[str]:
    return [e.code for e in events if isinstance(e, CommandRejected)]


def test_refund_command_returns_credits_to_their_buckets_last_draw_first() -> None:
    state = spread_consume()
    entries = decide_entries(state, refund("r1", 4))
    assert draws(entries) == [("refund", None, 3), ("refund", "g_b", 1)]
    assert {e.source for e in entries} == {"refund:r1"}
    lineage = {"reason": "goodwill", "command_id": "rf_1", "endpoint": SCAN}
    consumed_at = state.consumptions["r1"].consumed_at
    assert consumed_at is not None
    lineage["consumed_at"] = consumed_at.isoformat()
    assert [dict(e.metadata) for e in entries] == [
        {**lineage, "refundable_after": 7},
        {**lineage, "refundable_after": 6},
    ]
    assert remaining(evolve_all(state, entries)) == {"g_a": 0, "g_b": 1}


def test_refund_command_without_amount_refunds_all_that_is_left() -> None:
    state = spread_consume()
    state, _ = run([refund("r1", 4)], state)
    entries = decide_entries(state, refund("r1", None, "rf_2"))
    assert draws(entries) == [("refund", "g_b", 4), ("refund", "g_a", 2)]
    final = evolve_all(state, entries)
    assert (final.balance, remaining(final)) == (7, {"g_a": 2, "g_b": 5})


def test_second_full_refund_is_rejected_and_writes_nothing() -> None:
    state, _ = run([refund("r1", None)], spread_consume())
    events = decide(state, refund("r1", None, "rf_2"), RECORDED_AT)
    assert rejections(events) == ["already-refunded"]
    assert entries_of(events) == []


def test_refund_beyond_what_was_consumed_is_rejected() -> None:
    events = decide(spread_consume(), refund("r1", 11), RECORDED_AT)
    assert rejections(events) == ["refund-exceeds-consumed"]
    assert entries_of(events) == []


def test_refund_of_an_unknown_request_is_rejected() -> None:
    assert rejections(decide(spread_consume(), refund("r_unknown", 1), RECORDED_AT)) == [
        "unknown-request"
    ]


def test_failed_call_cannot_be_refunded_again() -> None:
    state = after(grant("g", 10), usage("r1", 3, status_code=500))
    assert rejections(decide(state, refund("r1", None), RECORDED_AT)) == ["already-refunded"]


# --- free calls, grants, adjustments ---------------------------------------------------------


@pytest.mark.parametrize("status_code", [200, 404, 500])
def test_free_call_writes_nothing(status_code: int) -> None:
    state = after(grant("g", 10))
    assert decide(state, usage("r1", 0, status_code=status_code), RECORDED_AT) == ()


def test_grant_writes_one_entry_that_opens_its_bucket() -> None:
    command = grant(
        "g_1",
        25,
        kind=BucketKind.SUBSCRIPTION,
        expires_at=day(30),
        source="invoice:in_9",
        name="November plan",
        applies_to=(SCAN,),
    )
    events = decide(AccountState(ACCOUNT), command, RECORDED_AT)
    (entry,) = events
    assert isinstance(entry, LedgerEntry)
    assert (entry.seq, entry.delta, entry.balance_after) == (1, 25, 25)
    assert entry.reason is EntryReason.GRANT
    assert entry.source == "invoice:in_9"
    assert (entry.bucket_grant_id, entry.bucket_kind) == ("g_1", BucketKind.SUBSCRIPTION)
    assert dict(entry.metadata) == {"name": "November plan", "granted": 25}
    assert entry.grant == Bucket(
        grant_id="g_1",
        kind=BucketKind.SUBSCRIPTION,
        priority=10,
        effective_at=T0,
        expires_at=day(30),
        granted_seq=1,
        remaining=25,
        applies_to=(SCAN,),
        granted=25,
        source="invoice:in_9",
    )
    assert evolve(AccountState(ACCOUNT), entry).buckets == (entry.grant,)


def test_grant_without_source_is_sourced_by_its_command_id() -> None:
    (entry,) = decide_entries(AccountState(ACCOUNT), grant("g_1", 5))
    assert entry.source == "grant:g_1"
    assert dict(entry.metadata) == {"granted": 5}


def test_later_grant_records_its_own_seq_as_granted_seq() -> None:
    state = after(grant("g_1", 5), grant("g_2", 5))
    assert [(b.grant_id, b.granted_seq) for b in state.buckets] == [("g_1", 1), ("g_2", 2)]


def test_positive_adjustment_adds_credits_outside_any_bucket() -> None:
    state = after(grant("g", 10))
    (entry,) = decide_entries(state, adjust("adj_1", 7, "goodwill"))
    assert entry.reason is EntryReason.ADJUSTMENT
    assert (entry.seq, entry.delta, entry.balance_after) == (2, 7, 17)
    assert entry.source == "adjustment:adj_1"
    assert (entry.bucket_grant_id, entry.bucket_kind) == (None, None)
    assert dict(entry.metadata) == {"reason": "goodwill"}
    final = evolve(state, entry)
    assert (final.balance, remaining(final)) == (17, {"g": 10})


def test_negative_adjustment_draws_buckets_like_usage_and_stops_at_the_limit() -> None:
    state = after(grant("g_a", 3, priority=1), grant("g_b", 10, priority=2))
    events = decide(state, adjust("adj_1", -15, "correction"), RECORDED_AT)
    assert [e.code for e in events if isinstance(e, CommandRejected)] == ["insufficient-credits"]
    assert not entries_of(events)
    forced = replace(adjust("adj_1", -15, "correction"), allow_negative=True)
    entries = decide_entries(state, forced)
    assert draws(entries) == [
        ("adjustment", "g_a", -3),
        ("adjustment", "g_b", -10),
        ("adjustment", None, -2),
    ]
    assert {e.source for e in entries} == {"adjustment:adj_1"}
    assert [dict(e.metadata) for e in entries] == [{"reason": "correction"}] * 2 + [
        {"reason": "correction", "owed": 2}
    ]
    assert evolve_all(state, entries).balance == -2


def test_seq_and_balance_after_chain_across_commands() -> None:
    state, entries = run(
        [
            credit_limit(100),
            grant("g_a", 10, priority=1),
            usage("r1", 4),
            usage("r2", 8, status_code=404),
            adjust("adj_1", 3),
            usage("r3", 5),
            grant("g_b", 6),
        ]
    )
    assert [
        (e.seq, e.reason.value, e.bucket_grant_id, e.delta, e.balance_after) for e in entries
    ] == [
        (1, "grant", "g_a", 10, 10),
        (2, "consume", "g_a", -4, 6),
        (3, "consume", "g_a", -6, 0),
        (4, "consume", None, -2, -2),
        (5, "refund", None, 2, 0),
        (6, "refund", "g_a", 6, 6),
        (7, "adjustment", None, 3, 9),
        (8, "consume", "g_a", -5, 4),
        (9, "grant", "g_b", 6, 10),
    ]
    assert (state.seq, state.balance) == (len(entries), 10)
    assert all(e.recorded_at == RECORDED_AT for e in entries)
    assert remaining(state) == {"g_a": 1, "g_b": 6}


def test_entries_carry_the_command_event_time() -> None:
    at = day(3) + timedelta(hours=7)
    entries = decide_entries(after(grant("g", 10)), usage("r1", 2, status_code=500, occurred_at=at))
    assert [e.occurred_at for e in entries] == [at, at]


def test_decide_does_not_change_the_state_it_is_given() -> None:
    state = after(grant("g", 10))
    snapshot = replace(state)
    decide(state, usage("r1", 4), RECORDED_AT)
    assert state == snapshot


def test_decide_is_deterministic() -> None:
    state = after(credit_limit(5), grant("g_a", 3), grant("g_b", 3))
    command = usage("r1", 9, status_code=500)
    assert decide(state, command, RECORDED_AT) == decide(state, command, RECORDED_AT)


def test_entry_id_is_a_uuid5_of_account_and_seq_only() -> None:
    _, first = run([grant("g", 10), usage("r1", 1)])
    _, other = run([adjust("adj", 99), usage("r9", 3, status_code=500)])
    assert [e.entry_id for e in first] == [e.entry_id for e in other[:2]]
    assert uuid.UUID(first[0].entry_id).version == 5
    expected = uuid.uuid5(uuid.UUID("6f1c2a53-93a4-4a8e-9a55-6b0f3f0c2d11"), "acct_42/1")
    assert first[0].entry_id == str(expected)


def test_entry_ids_differ_across_seq_and_across_accounts() -> None:
    _, entries = run([grant("g", 10), usage("r1", 3), usage("r2", 3, status_code=500)])
    ids = [e.entry_id for e in entries]
    assert len(set(ids)) == len(ids) == 4
    assert replace(entries[0], account_id="acct_43").entry_id != entries[0].entry_id


# --- evolve guards ---------------------------------------------------------------------------


def one_consume(state: AccountState) -> LedgerEntry:
    (entry,) = decide_entries(state, usage("r1", 1))
    return entry


def test_evolve_refuses_a_seq_gap() -> None:
    state = after(grant("g", 10))
    with pytest.raises(LedgerGap, match="seq gap"):
        evolve(state, replace(one_consume(state), seq=3))


def test_evolve_refuses_a_replayed_seq() -> None:
    state = after(grant("g", 10))
    with pytest.raises(LedgerGap, match="seq gap"):
        evolve(state, replace(one_consume(state), seq=1))


def test_evolve_refuses_a_wrong_balance_after() -> None:
    state = after(grant("g", 10))
    with pytest.raises(LedgerGap, match="balance_after"):
        evolve(state, replace(one_consume(state), balance_after=10))


def test_evolve_refuses_another_accounts_entry() -> None:
    state = after(grant("g", 10))
    with pytest.raises(AssertionError, match="another account"):
        evolve(state, replace(one_consume(state), account_id="acct_43"))


def test_evolve_refuses_an_unknown_bucket() -> None:
    state = after(grant("g", 10))
    with pytest.raises(AssertionError, match="unknown bucket"):
        evolve(state, replace(one_consume(state), bucket_grant_id="g_missing"))


def test_evolve_refuses_to_take_a_bucket_below_zero() -> None:
    state = after(grant("g", 1))
    with pytest.raises(AssertionError, match="below zero"):
        evolve(state, replace(one_consume(state), delta=-2, balance_after=-1))


def test_decide_refuses_a_command_for_another_account() -> None:
    with pytest.raises(AssertionError, match="another account"):
        decide(AccountState(ACCOUNT), replace(usage("r1", 1), account_id="acct_43"), RECORDED_AT)
