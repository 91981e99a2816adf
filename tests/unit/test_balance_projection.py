"""The balance read model folded over the domain's own entries, as they travel on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from projections.balance.apply import (
    BalanceView,
    GrantBalance,
    apply,
    apply_all,
    buckets_by_kind,
    reset_at,
)
from schemas.ledger import LedgerEntryMessage
from services.core import decide, evolve_all
from services.core.errors import LedgerGap
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    AdjustBalance,
    BucketKind,
    CaptureHold,
    ChangeSettings,
    Command,
    ConsumeUsage,
    GrantCredits,
    LedgerEntry,
    PlaceHold,
    ReleaseHold,
    VoidGrant,
)
from services.history.core_entries import to_message as entry_to_message
from services.writer.wire import entry_to_json_bytes

ACCOUNT = "acct_42"
SCAN = "POST /v1/scanner/scan"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 11, 15, 9, 30, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def grant(
    command_id: str,
    amount: int,
    kind: BucketKind = BucketKind.PURCHASED,
    expires_at: datetime | None = None,
) -> GrantCredits:
    return GrantCredits(
        account_id=ACCOUNT,
        command_id=command_id,
        amount=amount,
        kind=kind,
        priority=DEFAULT_PRIORITY[kind],
        source="",
        effective_at=T0,
        expires_at=expires_at,
        occurred_at=T0,
    )


def usage(request_id: str, credits: int, status_code: int = 200) -> ConsumeUsage:
    return ConsumeUsage(
        account_id=ACCOUNT,
        request_id=request_id,
        endpoint=SCAN,
        status_code=status_code,
        credits=credits,
        occurred_at=day(1),
    )


def adjust(command_id: str, amount: int) -> AdjustBalance:
    return AdjustBalance(ACCOUNT, command_id, amount, "support", day(2))


def credit_limit(limit: int) -> ChangeSettings:
    return ChangeSettings(ACCOUNT, "settings", occurred_at=T0, credit_limit=limit)


def hold(hold_id: str, amount: int, at: datetime, expires_at: datetime) -> PlaceHold:
    return PlaceHold(ACCOUNT, f"cmd_{hold_id}", hold_id, amount, expires_at, at)


def ledger(commands: Sequence[Command]) -> tuple[AccountState, list[LedgerEntry]]:
    """The domain's state and ledger entries after `commands`, recorded a second apart."""
    state = AccountState(ACCOUNT)
    entries: list[LedgerEntry] = []
    for index, command in enumerate(commands):
        events = decide(state, command, RECORDED_AT + timedelta(seconds=index))
        state = evolve_all(state, events)
        entries += [e for e in events if isinstance(e, LedgerEntry)]
    return state, entries


def fold(entries: Sequence[LedgerEntry], view: BalanceView | None = None) -> BalanceView:
    view = BalanceView(ACCOUNT) if view is None else view
    for entry in entries:
        view = apply(view, entry_to_message(entry))
    return view


SCENARIO: list[Command] = [
    credit_limit(100),
    grant("g_sub", 100, BucketKind.SUBSCRIPTION, expires_at=day(30)),
    grant("g_gift", 20, BucketKind.GIFT),
    grant("g_pack", 50, BucketKind.PURCHASED),
    usage("r1", 30),
    usage("r2", 80),  # 70 from g_sub, 10 from g_gift
    usage("r3", 15, status_code=404),  # consumed and refunded: g_gift 10, g_pack 5
    usage("r4", 0),  # free: no entry
    adjust("adj_1", 4),  # outside any bucket
    usage("r5", 80),  # g_gift 10, g_pack 50, then 20 from no bucket
]


def test_projection_balance_equals_the_domain_state() -> None:
    state, entries = ledger(SCENARIO)
    view = fold(entries)
    assert view.balance == state.balance == -16
    assert view.last_seq == state.seq == len(entries)
    assert view.available == view.balance
    assert view.reserved == 0
    assert view.last_updated == entries[-1].recorded_at


def test_projection_balance_equals_the_domain_state_after_every_entry() -> None:
    _, entries = ledger(SCENARIO)
    view = BalanceView(ACCOUNT)
    for entry in entries:
        view = apply(view, entry_to_message(entry))
        assert (view.last_seq, view.balance) == (entry.seq, entry.balance_after)


def test_granted_total_sums_grants_and_ignores_adjustments() -> None:
    _, entries = ledger(SCENARIO)
    assert fold(entries).granted_total == 170


def test_consumed_total_is_consumes_minus_refunds() -> None:
    _, entries = ledger(SCENARIO)
    consumes = sum(-e.delta for e in entries if e.reason.value == "consume")
    refunds = sum(e.delta for e in entries if e.reason.value == "refund")
    assert (consumes, refunds) == (205, 15)
    assert fold(entries).consumed_total == 190 == 30 + 80 + 80


def test_failed_call_leaves_consumed_total_unchanged() -> None:
    _, entries = ledger([grant("g", 10), usage("r1", 4, status_code=500)])
    view = fold(entries)
    assert (view.consumed_total, view.balance, view.granted_total) == (0, 10, 10)


def test_buckets_by_kind_match_the_domain_buckets() -> None:
    state, entries = ledger(SCENARIO)
    assert {b.remaining for b in state.buckets} == {0}
    assert buckets_by_kind(fold(entries)) == [
        {"kind": "gift", "amount": 20, "balance": 0},
        {"kind": "purchased", "amount": 50, "balance": 0},
        {"kind": "subscription", "amount": 100, "balance": 0},
        {"kind": "overage", "amount": 16, "balance": -16},  # the buckets add up to balance
    ]
    _, partial = ledger(SCENARIO[:5])
    domain = {b.kind.value: b.remaining for b in evolve_all(AccountState(ACCOUNT), partial).buckets}
    by_kind = {str(row["kind"]): row["balance"] for row in buckets_by_kind(fold(partial))}
    assert by_kind == domain == {"subscription": 70, "gift": 20, "purchased": 50}


def test_buckets_by_kind_sum_grants_of_the_same_kind() -> None:
    _, entries = ledger([grant("g_a", 5, BucketKind.GIFT), grant("g_b", 7, BucketKind.GIFT)])
    view = fold(entries)
    assert buckets_by_kind(view) == [{"kind": "gift", "amount": 12, "balance": 12}]
    assert view.grants["g_a"].balance == 5


def test_applying_an_entry_twice_changes_nothing() -> None:
    _, entries = ledger(SCENARIO)
    view = fold(entries[:5])
    again = apply(view, entry_to_message(entries[4]))
    assert again == view
    assert apply(view, entry_to_message(entries[0])) == view


def test_replaying_the_whole_ledger_over_a_caught_up_view_changes_nothing() -> None:
    _, entries = ledger(SCENARIO)
    view = fold(entries)
    assert fold(entries, view) == view


def test_a_run_folds_to_what_entry_by_entry_gives_redeliveries_included() -> None:
    _, entries = ledger(SCENARIO)
    messages = [entry_to_message(e) for e in entries]
    for split in range(len(messages) + 1):
        start = fold(entries[:split])
        redelivered = [*messages[: split // 2], *messages, *messages[split:]]
        assert apply_all(start, redelivered) == fold(entries)
        assert apply_all(start, messages[:split]) is start  # nothing new: the same view


def test_a_seq_gap_is_refused() -> None:
    _, entries = ledger(SCENARIO)
    view = fold(entries[:2])
    with pytest.raises(LedgerGap, match="gap"):
        apply(view, entry_to_message(entries[3]))


def test_an_entry_whose_balance_after_disagrees_is_refused() -> None:
    _, entries = ledger([grant("g", 10), usage("r1", 3)])
    message = entry_to_message(entries[1]).model_copy(update={"balance_after": 8})
    with pytest.raises(LedgerGap, match="balance_after"):
        apply(fold(entries[:1]), message)


def test_another_accounts_entry_is_refused() -> None:
    _, entries = ledger([grant("g", 10)])
    with pytest.raises(AssertionError, match="another account"):
        apply(BalanceView("acct_43"), entry_to_message(entries[0]))


def test_wire_message_round_trips_through_json() -> None:
    _, entries = ledger(SCENARIO)
    for entry in entries:
        message = entry_to_message(entry)
        assert LedgerEntryMessage.model_validate_json(entry_to_json_bytes(entry)) == message


def test_wire_message_uses_contract_names_and_bucket_expiry_on_grants_only() -> None:
    _, entries = ledger([grant("g_sub", 10, BucketKind.SUBSCRIPTION, day(30)), usage("r1", 2)])
    granted, consumed = (entry_to_message(e) for e in entries)
    assert granted.id == entries[0].entry_id
    assert (granted.reason, granted.source, granted.delta) == ("grant", "grant:g_sub", 10)
    assert granted.bucket is not None
    assert (granted.bucket.grant_id, granted.bucket.kind) == ("g_sub", "subscription")
    assert granted.bucket.expires_at == day(30)
    assert consumed.bucket is not None
    assert (consumed.reason, consumed.source) == ("consume", "request:r1")
    assert consumed.bucket.expires_at is None
    assert consumed.metadata == {"endpoint": SCAN, "key_id": None, "status_code": 200}


def test_overdraft_entry_travels_without_bucket() -> None:
    _, entries = ledger([usage("r1", 3)])
    message = entry_to_message(entries[0])
    assert message.bucket is None
    assert fold(entries).grants == {}


# --- reset_at ------------------------------------------------------------------------------


def reset_view() -> BalanceView:
    _, entries = ledger(
        [
            grant("g_gift", 5, BucketKind.GIFT, expires_at=day(3)),
            grant("g_sub_late", 10, BucketKind.SUBSCRIPTION, expires_at=day(60)),
            grant("g_sub_soon", 10, BucketKind.SUBSCRIPTION, expires_at=day(30)),
            grant("g_sub_forever", 10, BucketKind.SUBSCRIPTION),
            grant("g_promo", 5, BucketKind.PROMOTIONAL, expires_at=day(10)),
        ]
    )
    return fold(entries)


def test_reset_at_is_the_earliest_active_subscription_expiry() -> None:
    assert reset_at(reset_view(), now=day(1)) == day(30)


def test_reset_at_ignores_expired_subscriptions() -> None:
    view = reset_view()
    assert reset_at(view, now=day(30) - timedelta(seconds=1)) == day(30)
    assert reset_at(view, now=day(30)) == day(60)


def test_reset_at_is_none_when_no_subscription_expires_later() -> None:
    assert reset_at(reset_view(), now=day(60)) is None
    _, entries = ledger([grant("g_gift", 5, BucketKind.GIFT, expires_at=day(3))])
    assert reset_at(fold(entries), now=day(1)) is None
    assert reset_at(BalanceView(ACCOUNT), now=day(1)) is None


def test_reset_at_ignores_voided_subscriptions() -> None:
    # A voided grant's credits have left the account: it is no longer an active subscription.
    _, entries = ledger(
        [
            grant("g_sub_void", 10, BucketKind.SUBSCRIPTION, expires_at=day(30)),
            grant("g_sub", 10, BucketKind.SUBSCRIPTION, expires_at=day(60)),
            VoidGrant(ACCOUNT, "void_1", "g_sub_void", day(1)),
        ]
    )
    view = fold(entries)
    assert view.grants["g_sub_void"].closed
    assert reset_at(view, now=day(2)) == day(60)


# --- holds, expiry and void --------------------------------------------------------------


def test_hold_moves_credits_to_reserved_and_release_gives_them_back() -> None:
    commands: list[Command] = [grant("g", 10), hold("h1", 4, day(1), day(5))]
    state, entries = ledger(commands)
    view = fold(entries)
    assert (view.balance, view.reserved, view.available) == (10, 4, 6)
    assert (view.reserved, view.available) == (state.reserved, state.available)
    state, entries = ledger([*commands, ReleaseHold(ACCOUNT, "rel_1", "h1", day(2))])
    view = fold(entries)
    assert (view.balance, view.reserved, view.available) == (10, 0, 10)
    assert view.reserved == state.reserved


def test_capture_consumes_the_captured_part_and_releases_the_hold() -> None:
    capture = CaptureHold(ACCOUNT, "cap_1", "h1", 3, "req_9", SCAN, day(2))
    state, entries = ledger([grant("g", 10), hold("h1", 4, day(1), day(5)), capture])
    view = fold(entries)
    assert (view.balance, view.reserved, view.available) == (7, 0, 7)
    assert (view.balance, view.reserved) == (state.balance, state.reserved)
    assert view.consumed_total == 3


def test_hold_is_released_when_a_later_command_passes_its_expiry() -> None:
    before: list[Command] = [grant("g", 10), hold("h1", 4, day(1), day(5)), usage("r1", 1)]
    _, entries = ledger(before)
    assert fold(entries).reserved == 4
    state, entries = ledger([*before, ConsumeUsage(ACCOUNT, "r2", SCAN, 200, 1, day(6))])
    view = fold(entries)
    assert [e.reason.value for e in entries[-2:]] == ["release", "consume"]
    assert entries[-2].occurred_at == day(5)
    assert (view.balance, view.reserved) == (state.balance, state.reserved) == (8, 0)


def test_expiry_closes_the_grant_and_takes_what_was_left() -> None:
    state, entries = ledger(
        [
            grant("g_promo", 10, BucketKind.PROMOTIONAL, expires_at=day(3)),
            grant("g_pack", 5),
            usage("r1", 4),
            ConsumeUsage(ACCOUNT, "r2", SCAN, 200, 1, day(4)),
        ]
    )
    view = fold(entries)
    assert [e.reason.value for e in entries] == ["grant", "grant", "consume", "expiry", "consume"]
    assert view.grants["g_promo"] == GrantBalance("promotional", 10, 0, day(3), closed=True)
    assert view.grants["g_pack"].balance == 4
    assert view.balance == state.balance == 4
    assert buckets_by_kind(view) == [  # the expired grant has left, as in the core's figures
        {"kind": "purchased", "amount": 5, "balance": 4},
    ]


def test_void_closes_the_grant() -> None:
    state, entries = ledger(
        [
            grant("g_gift", 10, BucketKind.GIFT),
            usage("r1", 3),
            VoidGrant(ACCOUNT, "v1", "g_gift", day(2)),
        ]
    )
    view = fold(entries)
    assert view.grants["g_gift"].closed
    assert view.grants["g_gift"].balance == 0
    assert view.balance == state.balance == 0
    assert view.consumed_total == 3
