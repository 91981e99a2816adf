"""The read models and point-in-time folds over hand-built ledgers in the issue 12 shape
(tests/ledger_shapes.py): scheduled grants and their activation, overage payments, owed
consumes, captures, refunds of owed parts; and ledgers written before it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest

from projections.activity import apply as activity
from projections.balance.apply import BalanceView, apply_all, buckets_by_kind, fold_any, reset_at
from projections.balance.store import grants_json
from projections.grants import apply as grants
from projections.usage import credits as usage
from schemas.ledger import LedgerEntryMessage
from services.api.reads.grants import custom_metadata
from services.history.as_of import AsOfBalance, BucketKindBalance, TimeAxis, fold_entries
from tests.ledger_shapes import REPORT, SCAN, T0, Ledger, hours, legacy, story

DAY1, DAY2, DAY3 = date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)


def view_after(book: Ledger, seq: int) -> BalanceView:
    return apply_all(BalanceView(book.account_id), book.entries[:seq])


def kinds(view: BalanceView) -> dict[str, tuple[int, int]]:
    return {str(b["kind"]): (int(b["amount"]), int(b["balance"])) for b in buckets_by_kind(view)}


def fold_days(entries: Sequence[LedgerEntryMessage]) -> dict[date, tuple[int, int, int]]:
    days: dict[activity.DayKey, activity.DayActivity] = {}
    last: str | None = None
    for entry in entries:
        last = activity.apply(days, last, entry)
    return {d: (a.scans, a.credits, a.refunds) for (_, d), a in days.items()}


def fold_grants(entries: Sequence[LedgerEntryMessage]) -> dict[str, grants.GrantRow]:
    rows: dict[grants.GrantKey, grants.GrantRow] = {}
    for entry in entries:
        grants.apply(rows, entry)
    return {g: row for (_, g), row in rows.items()}


# --- balance -------------------------------------------------------------------------------


def test_the_buckets_add_up_to_the_balance_after_every_entry() -> None:
    for book in (story(), legacy()):
        view = BalanceView(book.account_id)
        for entry in book.entries:
            view = apply_all(view, [entry])
            assert sum(int(b["balance"]) for b in buckets_by_kind(view)) == view.balance
            assert view.unbucketed - view.overage == view.pot
            assert min(view.unbucketed, view.overage) == 0


def test_a_scheduled_grant_is_not_spendable_until_its_activation() -> None:
    book = story()
    issued = view_after(book, 2)
    assert (issued.balance, issued.scheduled, issued.pot) == (100, 50, 0)
    assert kinds(issued) == {"subscription": (100, 100)}  # `next` is the scheduled figure
    assert issued.grants["next"].scheduled == 50 and not issued.grants["next"].spendable
    owed = view_after(book, 7)  # r2 owed 10; the failed call's owed 5 came back
    assert (owed.balance, owed.overage, owed.unbucketed, owed.scheduled) == (-10, 10, 0, 50)
    assert kinds(owed) == {"subscription": (100, 0), "overage": (10, -10)}
    activated = view_after(book, 9)  # 40 into `next`, 10 paid the overage
    assert (activated.balance, activated.overage, activated.scheduled) == (40, 0, 0)
    assert kinds(activated) == {"purchased": (50, 40), "subscription": (100, 0)}
    assert activated.granted_total == 100 + 40 + 10  # grant entries' deltas


def test_the_pot_is_unbucketed_credit_above_zero_and_owed_below() -> None:
    book = story()
    adjusted = view_after(book, 10)
    assert (adjusted.unbucketed, adjusted.overage) == (3, 0)
    assert kinds(adjusted)["unbucketed"] == (3, 3)
    call = view_after(book, 13)  # r3: 40 from `next`, 3 from the pot, 2 owed
    assert (call.balance, call.unbucketed, call.overage) == (-2, 0, 2)
    paid = view_after(book, 15)  # the gift pays the 2 first
    assert (paid.balance, paid.overage) == (18, 0)
    assert kinds(paid)["gift"] == (20, 18)


def test_the_whole_story_folds_to_the_hand_computed_view() -> None:
    view = view_after(story(), 22)
    assert (view.balance, view.reserved, view.granted_total, view.consumed_total) == (
        12, 0, 170, 30 + 80 + 5 - 5 + 45 + 6 - 30,
    )  # fmt: skip
    assert (view.scheduled, view.unbucketed, view.overage) == (0, 0, 0)
    assert kinds(view) == {"gift": (20, 12), "purchased": (50, 0)}  # `sub` expired
    voided = view.grants["later"]
    assert (voided.closed, voided.balance, voided.scheduled) == (True, 0, 40)  # never effective
    assert grants_json(view)["later"]["scheduled"] == 40


def test_a_scheduled_voided_grant_leaves_no_scheduled_credit() -> None:
    book = story()
    assert view_after(book, 20).scheduled == 40
    assert view_after(book, 21).scheduled == 0
    assert "promotional" not in kinds(view_after(book, 21))


def test_reset_at_needs_an_effective_subscription_with_credit_left() -> None:
    book = Ledger("reset")
    book.grant("soon", 10, "subscription", T0, expires_at=hours(100))
    book.grant("sched", 10, "subscription", T0, effective_at=hours(10), expires_at=hours(50))
    view = apply_all(BalanceView("reset"), book.entries)
    assert reset_at(view, T0) == hours(100)  # the scheduled one is not yet a subscription
    book.call("c", hours(1), [("soon", 10)])
    book.activate("sched", 10)
    view = apply_all(BalanceView("reset"), book.entries)
    assert reset_at(view, hours(11)) == hours(50)  # `soon` has no credit left


def test_legacy_grants_take_their_delta_as_amount() -> None:
    view = apply_all(BalanceView("legacy"), legacy().entries)
    assert view.grants["old"].amount == 10
    assert (view.balance, view.pot) == (0, 0)
    assert kinds(view) == {"purchased": (10, 0)}


def test_an_activation_of_a_grant_never_scheduled_is_refused() -> None:
    book = Ledger("bad")
    book.grant("g", 10, "gift", T0)
    book.add("grant", 5, "grant:g", T0, "g", {"activated": 5})
    with pytest.raises(AssertionError, match="not scheduled"):
        apply_all(BalanceView("bad"), book.entries)


def test_fold_any_takes_any_subset_and_matches_the_checked_fold_on_a_prefix() -> None:
    book = story()
    for seq in range(len(book.entries) + 1):
        assert fold_any(BalanceView("story"), book.entries[:seq]) == view_after(book, seq)
    # A subset without its grant's opening entry does not raise: the pot holds what is unknown.
    orphan = fold_any(BalanceView("story"), [book.entries[2]])
    assert (orphan.balance, sum(int(b["balance"]) for b in buckets_by_kind(orphan))) == (-30, -30)


def test_custom_fields_named_like_the_cores_keys_stay_custom() -> None:
    book = Ledger("names")
    book.grant("g", 10, "gift", T0)
    book.add("grant", 0, "grant:h", T0, None, {})  # unrelated: keeps seq moving
    book.terms["c"] = book.terms["g"]
    book.add("grant", 7, "grant:c", T0, "c", {"activated": "yes", "granted": "lots"})
    view = apply_all(BalanceView("names"), book.entries)
    assert view.grants["c"].amount == 7  # text is custom: an opening entry, amount its delta
    assert custom_metadata({"granted": 10, "scheduled": 10, "plan": "pro"}) == {"plan": "pro"}
    assert custom_metadata({"granted": "lots"}) == {"granted": "lots"}


# --- grants --------------------------------------------------------------------------------


def test_grants_are_scheduled_then_active_with_amount_as_granted() -> None:
    book = story()
    early = fold_grants(book.entries[:2])
    assert (early["next"].state, early["next"].amount, early["next"].remaining) == (
        "scheduled", 50, 0,
    )  # fmt: skip
    assert early["next"].effective_at == hours(24)
    later = fold_grants(book.entries[:9])
    assert (later["next"].state, later["next"].amount, later["next"].remaining) == (
        "active", 50, 40,
    )  # fmt: skip
    assert later["next"].granted_seq == 2  # the activation does not reopen it
    rows = fold_grants(book.entries)
    assert {g: (r.state, r.amount, r.remaining) for g, r in rows.items()} == {
        "sub": ("expired", 100, 0),
        "next": ("active", 50, 0),
        "gift": ("active", 20, 12),  # paid 2 of an overage: it opened with 18
        "later": ("voided", 40, 0),
    }
    assert (rows["sub"].name, rows["later"].closed_seq) == ("Plan", 21)


def test_overage_payments_touch_no_grant_row() -> None:
    book = story()
    payment = book.entries[8]
    assert payment.bucket is None and payment.metadata["pays_overage"] == 10
    before = fold_grants(book.entries[:8])
    assert fold_grants(book.entries[:9]) == before


def test_legacy_grant_rows_take_their_delta_as_amount() -> None:
    assert fold_grants(legacy().entries)["old"].amount == 10


# --- activity and usage: one count of a call ------------------------------------------------


def test_a_charged_call_is_one_scan_on_its_day_and_owed_credits_count() -> None:
    days = fold_days(story().entries)
    assert days == {
        # r1 (30, then refunded in full: the scan goes back), r2 (70 drawn + 10 owed: one
        # scan), f1 (owed 5, refunded: nets to zero)
        DAY1: (1, 80, 35),
        DAY2: (1, 45, 0),  # r3: three entries (bucket, pot, owed), one scan
        DAY3: (1, 6, 0),  # the capture
    }


def test_calls_that_charged_nothing_are_no_scan() -> None:
    # o1 and o2 charged; o2's 0-delta remainder and o3 (0-delta only) charged nothing.
    assert fold_days(legacy().entries) == {DAY1: (2, 10, 0)}


def test_usage_credits_are_the_calls_net_credits_per_endpoint_and_day() -> None:
    credits: dict[usage.UsageKey, int] = {}
    for entry in story().entries:
        usage.fold(credits, entry)
    assert credits == {
        ("story", SCAN, DAY1): 80, ("story", REPORT, DAY2): 45, ("story", SCAN, DAY3): 6,
    }  # fmt: skip
    days = fold_days(story().entries)
    assert sum(credits.values()) == sum(c for _, c, _ in days.values())


# --- point in time -------------------------------------------------------------------------


def as_of(book: Ledger, moment: datetime, by: TimeAxis) -> AsOfBalance:
    result = fold_entries(book.account_id, [book.row(e) for e in book.entries], moment, by)
    assert result is not None
    assert sum(b.balance for b in result.buckets) == result.balance
    return result


def test_as_of_recorded_is_the_balance_view_of_the_prefix() -> None:
    """When nothing is due at the instant: here every entry is recorded a day before T0, so
    before any grant's effective_at or expiry (services/history/as_of.py)."""
    book = story()
    early = T0 - timedelta(days=1)
    book.entries = [e.model_copy(update={"recorded_at": early + timedelta(seconds=e.seq)})
                    for e in book.entries]  # fmt: skip
    for entry in book.entries:
        result = as_of(book, entry.recorded_at, "recorded")
        view = view_after(book, entry.seq)
        assert (result.seq, result.balance, result.scheduled, result.overage) == (
            entry.seq, view.balance, view.scheduled, view.overage,
        )  # fmt: skip
        assert [(b.kind, b.amount, b.balance) for b in result.buckets] == [
            (b["kind"], b["amount"], b["balance"]) for b in buckets_by_kind(view)
        ]
        assert result.unbucketed == view.unbucketed
        assert result.balance == entry.balance_after


def test_as_of_recorded_applies_what_was_due_that_the_prefix_does_not_hold() -> None:
    """Recorded after the scheduled grant's effective_at (hour 24) but before its activation
    entry: the balance then already answered it spendable, so the as-of balance does."""
    book = story()
    opened = book.entries[1]  # `next`, scheduled, effective from hour 24
    assert opened.bucket is not None and opened.bucket.grant_id == "next"
    assert opened.recorded_at > hours(24)
    result = as_of(book, opened.recorded_at, "recorded")
    assert (result.seq, result.balance, result.scheduled, result.overage) == (2, 150, 0, 0)
    assert opened.balance_after == 100  # what the prefix alone says


def test_as_of_occurred_counts_a_scheduled_grant_from_its_effective_at() -> None:
    book = story()
    before = as_of(book, hours(24) - timedelta(microseconds=1), "occurred")
    assert (before.balance, before.scheduled, before.overage) == (-10, 50, 10)
    at = as_of(book, hours(24), "occurred")
    assert (at.balance, at.scheduled, at.overage, at.granted_total) == (40, 0, 0, 150)
    assert at.buckets == (BucketKindBalance("purchased", 50, 40),
                          BucketKindBalance("subscription", 100, 0))  # fmt: skip


def test_as_of_occurred_counts_a_backdated_grant_from_its_effective_at() -> None:
    # x1 happened at hour 6 and was written first, owed; the grant, issued at hour 10 but
    # effective from hour 5, paid it; x2 happened at hour 7, arrived late, drew the grant.
    book = Ledger("back")
    book.call("x1", hours(6), [], owed=7)
    book.grant("g", 20, "purchased", hours(10), effective_at=hours(5), paid=7)
    book.call("x2", hours(7), [("g", 4)])
    assert fold_entries("back", [book.row(e) for e in book.entries], hours(4.9)) is None
    at_6 = as_of(book, hours(6), "occurred")  # once issued, at its grants' count: -7, never
    assert (at_6.balance, at_6.granted_total, at_6.overage) == (13, 20, 0)
    assert at_6.buckets == (BucketKindBalance("purchased", 20, 13),)
    at_7 = as_of(book, hours(7), "occurred")
    assert (at_7.balance, at_7.overage) == (9, 0) == (book.balance, 0)
    recorded = as_of(book, book.entries[0].recorded_at, "recorded")  # the ledger's own state
    assert (recorded.balance, recorded.overage, recorded.buckets) == (
        -7, 7, (BucketKindBalance("overage", 7, -7),),
    )  # fmt: skip


def test_as_of_occurred_and_recorded_agree_once_everything_happened() -> None:
    book = story()
    end = T0 + timedelta(days=365)
    occurred, recorded = as_of(book, end, "occurred"), as_of(book, end, "recorded")
    assert (occurred.balance, occurred.buckets, occurred.granted_total) == (
        recorded.balance, recorded.buckets, recorded.granted_total,
    )  # fmt: skip
    assert occurred.to_json()["buckets"] == [
        {"kind": "gift", "amount": 20, "balance": 12},
        {"kind": "purchased", "amount": 50, "balance": 0},
    ]


def test_as_of_takes_the_contracts_entry_shape_too() -> None:
    book = story()
    contract = [e.model_dump(mode="json") for e in book.entries]
    rows = [book.row(e) for e in book.entries]
    axes: tuple[TimeAxis, ...] = ("recorded", "occurred")
    for moment in (hours(2), hours(24), hours(49), book.entries[5].recorded_at):
        for by in axes:
            assert fold_entries("story", contract, moment, by) == fold_entries(
                "story", rows, moment, by
            )
