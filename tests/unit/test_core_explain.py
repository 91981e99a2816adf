"""explain (services/core/explain.py) over random histories: its figures add up, agree with the
core's balance and with the independent model, and its drawdown order is the one the next call
actually takes.

Histories are test_money_model's (grants effective in the past and the future, expiring, with
`applies_to` and priorities; calls on time, late, failed and free; refunds, holds, captures,
adjustments both ways, voids, settings, scheduler expiries), decided by the core. After every
step, explain over the ledger so far, at the event-time high-water mark and at an instant
around it, must show:
- `sum(remaining) + unbucketed - overage == balance`, and per grant
  `granted - consumed + refunded - expired - voided - adjusted == remaining`;
- `balance`, `overage`, `unbucketed`, `scheduled` equal to `spend.figures` on the core's state and
  to the model's; each grant's `remaining`, and whether it is closed or scheduled, the model's;
- `drawOrder`: an adjustment taking everything at that instant draws exactly the spendable
  grants in that order, each to its `remaining`; a call on each endpoint draws those it may
  (`applies_to`) in that order;
- the recent consumes: the last 20 charged requests, newest first, with the draws and the owed
  part their consume entries have.
And the ledger read back from its published shape (wire.entry_to_message, then the explain
read's CoreEntries) explains the same, by ledger time and (as services/history selects it) by
event time, where it also agrees with the point-in-time balance of the same entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.reads.explain import CoreEntries
from services.core.decide import decide_and_evolve
from services.core.explain import (
    EXPIRED,
    NOT_YET_EFFECTIVE,
    RECENT_CONSUMES,
    SCHEDULED,
    SPENDABLE,
    SPENT,
    VOIDED,
    Explanation,
    GrantExplained,
    explain,
)
from services.core.model import (
    AccountState,
    AdjustBalance,
    BucketKind,
    Command,
    ConsumeUsage,
    EntryReason,
    GrantCredits,
    LedgerEntry,
)
from services.core.spend import figures
from services.history.as_of import EVERY_ENTRY, AsOfBalance, fold_entries, select_entries
from services.history.core_entries import to_message as entry_to_message
from tests.ledger_shapes import legacy, story
from tests.unit.money_model import MoneyModel
from tests.unit.test_core_invariants import BOUNDED
from tests.unit.test_money_model import (
    ACCOUNT,
    ENDPOINTS,
    RECORDED_AT,
    STEPS,
    StepSpec,
    hours,
    to_command,
)


def check_sums(explained: Explanation, whole_grants: bool = True) -> None:
    """`whole_grants`: every grant's amount is accounted for (not so between an activation and
    its overage payment, two entries a hand-built ledger may record apart)."""
    total = sum(g.remaining for g in explained.grants)
    assert total + explained.unbucketed - explained.overage == explained.balance
    assert explained.unbucketed == 0 or explained.overage == 0
    for g in explained.grants:
        moved = g.granted - g.consumed + g.refunded - g.expired - g.voided - g.adjusted
        assert moved == g.remaining, g
        assert g.status != SPENDABLE or g.draw_order is not None, g
        assert (g.draw_order is None) == (g.status != SPENDABLE), g
        if whole_grants and g.status != VOIDED:  # voided while scheduled: it never came in
            assert g.granted + g.paid_overage + g.scheduled == g.amount, g
    orders = sorted(g.draw_order for g in explained.grants if g.draw_order is not None)
    assert orders == list(range(1, len(orders) + 1))


def check_core_and_model(
    explained: Explanation, state: AccountState, model: MoneyModel, at: datetime
) -> None:
    core = figures(state, at)
    shown = (explained.balance, explained.overage, explained.unbucketed, explained.scheduled)
    assert shown == (core.balance, core.overage, core.unbucketed, core.scheduled)
    then = model.at(at)
    assert explained.overage == then.owed and explained.unbucketed == max(then.pot, 0)
    by_id = {g.grant_id: g for g in explained.grants}
    assert set(by_id) == set(then.grants)
    for grant_id, m in then.grants.items():
        g = by_id[grant_id]
        assert g.remaining == (0 if m.closed else m.remaining), (g, m)
        # An empty grant past its expiry leaves the core's state with no entry of its own: read
        # before that expiry (a probe behind the high-water mark), it shows as spent.
        closed = g.status in (EXPIRED, VOIDED) or (g.status == SPENT and m.closed)
        assert closed == m.closed, (g, m)
        assert (g.status == SCHEDULED) == (m.scheduled and not m.closed), (g, m)


def drawn(state: AccountState, command: AdjustBalance | ConsumeUsage) -> list[tuple[str, int]]:
    events, _ = decide_and_evolve(state, command, RECORDED_AT)
    return [
        (e.bucket_grant_id, -e.delta)
        for e in events
        if isinstance(e, LedgerEntry)
        and e.reason in (EntryReason.CONSUME, EntryReason.ADJUSTMENT)
        and e.bucket_grant_id is not None
    ]


def check_draw_order(explained: Explanation, state: AccountState, at: datetime) -> None:
    """The next charge at `at` takes the spendable grants in `drawOrder`."""
    ordered = sorted(
        (g for g in explained.grants if g.draw_order is not None),
        key=lambda g: g.draw_order or 0,
    )
    everything = sum(g.remaining for g in ordered) + 1
    take_all = AdjustBalance(ACCOUNT, "probe_all", -everything, "probe", at, allow_negative=True)
    assert drawn(state, take_all) == [(g.grant_id, g.remaining) for g in ordered]
    for endpoint in ENDPOINTS:
        call = ConsumeUsage(ACCOUNT, "probe_call", endpoint, 200, everything, at)
        allowed = [g for g in ordered if g.applies_to is None or endpoint in g.applies_to]
        assert [grant_id for grant_id, _ in drawn(state, call)] == [g.grant_id for g in allowed]


def check_recent(
    explained: Explanation, entries: Sequence[LedgerEntry], recent: int = RECENT_CONSUMES
) -> None:
    consumes = [e for e in entries if e.reason is EntryReason.CONSUME]
    requests: list[str] = []
    for e in consumes:
        assert e.request_id is not None
        if e.request_id not in requests:
            requests.append(e.request_id)
    newest = requests[::-1][:recent]
    assert [c.request_id for c in explained.recent_consumes] == newest
    for c in explained.recent_consumes:
        own = [e for e in consumes if e.request_id == c.request_id]
        owed = [e for e in own if e.bucket_grant_id is None and "owed" in e.metadata]
        draws = [(e.bucket_grant_id, -e.delta) for e in own if e not in owed]
        assert [(d.grant_id, d.amount) for d in c.draws] == draws
        assert c.owed == sum(-e.delta for e in owed)
        assert c.credits == sum(-e.delta for e in own) == sum(d for _, d in draws) + c.owed
        refunds = [e for e in entries if e.reason is EntryReason.REFUND]
        assert c.refunded == sum(e.delta for e in refunds if e.request_id == c.request_id)


def as_of_figures(as_of: AsOfBalance | None) -> tuple[int, int, int, int, dict[str, int]]:
    """The point-in-time balance's figures explain also shows (none before the first entry)."""
    if as_of is None:
        return (0, 0, 0, 0, {})
    kinds = {b.kind: b.balance for b in as_of.buckets if b.kind not in ("unbucketed", "overage")}
    return (as_of.balance, as_of.overage, as_of.unbucketed, as_of.scheduled, kinds)


def explained_figures(explained: Explanation) -> tuple[int, int, int, int, dict[str, int]]:
    kinds: dict[str, int] = {}
    for g in explained.grants:
        if g.status in (SPENDABLE, SPENT, NOT_YET_EFFECTIVE):
            kinds[g.kind.value] = kinds.get(g.kind.value, 0) + g.remaining
    return (explained.balance, explained.overage, explained.unbucketed, explained.scheduled, kinds)


def check_read_back(
    explained: Explanation, entries: Sequence[LedgerEntry], state: AccountState, at: datetime
) -> None:
    """From the ledger's published shape, as the explain read gets it, the same explanation; on
    both clocks, explain and the point-in-time balance of the same entries agree, what was due at
    `at` applied by both; and with every entry, the point-in-time balance is the live one."""
    messages = [entry_to_message(e) for e in entries]
    core = CoreEntries()
    assert explain(ACCOUNT, [core.of(m) for m in messages], at) == explained
    rows = [m.model_dump() for m in messages]
    for by in ("recorded", "occurred"):
        chosen = select_entries(ACCOUNT, messages, at, by)
        core = CoreEntries()
        on_clock = explain(ACCOUNT, [core.of(m) for m in chosen], at)
        check_sums(on_clock)
        as_of = fold_entries(ACCOUNT, rows, at, by=by)
        assert explained_figures(on_clock) == as_of_figures(as_of), (by, at)
    live, now = figures(state, at), fold_entries(ACCOUNT, rows, at, "recorded", cut=EVERY_ENTRY)
    assert now is not None  # the ledger as it stands, at `at`: what the live balance answers
    assert (now.balance, now.overage, now.unbucketed, now.scheduled, now.reset_at) == (
        live.balance, live.overage, live.unbucketed, live.scheduled, live.reset_at,
    )  # fmt: skip
    assert [(b.kind, b.amount, b.balance) for b in now.buckets] == [
        (k.kind, k.amount, k.balance) for k in live.buckets
    ]


def check_all(
    entries: Sequence[LedgerEntry], state: AccountState, model: MoneyModel, at: datetime
) -> Explanation:
    explained = explain(ACCOUNT, entries, at)
    check_sums(explained)
    check_core_and_model(explained, state, model, at)
    check_draw_order(explained, state, at)
    return explained


@settings(BOUNDED, derandomize=True)
@given(st.lists(STEPS, min_size=5, max_size=40), st.integers(-6, 12))
def test_explain_adds_up_to_the_balance_and_the_owed_amount(
    specs: list[StepSpec], later: int
) -> None:
    state, model = AccountState(ACCOUNT), MoneyModel()
    entries: list[LedgerEntry] = []
    high = 0  # the event-time high-water mark, in hours
    for index, spec in enumerate(specs):
        high += spec.advance
        command = to_command(index, spec, model, hours(high - spec.late))
        events, state = decide_and_evolve(state, command, RECORDED_AT + timedelta(seconds=index))
        model.apply(command)
        entries += [e for e in events if isinstance(e, LedgerEntry)]
        check_all(entries, state, model, hours(high))
        check_all(entries, state, model, hours(high + spec.probes[0][0]))
    at = hours(high + later)
    explained = check_all(entries, state, model, at)
    check_recent(explained, entries)
    check_recent(explain(ACCOUNT, entries, at, recent=3), entries, recent=3)
    check_read_back(explained, entries, state, at)


def test_why_names_priority_expiry_and_age() -> None:
    """The sentence a reader gets, on a hand-made history: three grants, one call, one owed."""
    t0 = hours(0)
    grants = [
        GrantCredits(ACCOUNT, "sub", 10, BucketKind.SUBSCRIPTION, 10, "", t0,
                     t0 + timedelta(days=30), t0),
        GrantCredits(ACCOUNT, "gift", 5, BucketKind.GIFT, 30, "", t0, None, t0),
        GrantCredits(ACCOUNT, "later", 7, BucketKind.PURCHASED, 40, "", t0 + timedelta(days=2),
                     None, t0),
    ]  # fmt: skip
    state, entries = AccountState(ACCOUNT), []
    commands: list[Command] = [*grants, ConsumeUsage(ACCOUNT, "r1", ENDPOINTS[0], 200, 20, t0)]
    for command in commands:
        events, state = decide_and_evolve(state, command, RECORDED_AT)
        entries += [e for e in events if isinstance(e, LedgerEntry)]
    explained = explain(ACCOUNT, entries, t0 + timedelta(hours=1))
    by_id: dict[str, GrantExplained] = {g.grant_id: g for g in explained.grants}
    assert (explained.balance, explained.overage) == (-5, 5)
    assert by_id["sub"].status == by_id["gift"].status == "spent"
    assert by_id["later"].why == "scheduled: 7 credits spendable from 2026-11-03T20:00:00Z"
    assert explained.overage_why.startswith("5 credits owed: what no spendable credit covered "
                                            "of 1 call")  # fmt: skip
    (call,) = explained.recent_consumes
    assert [(d.grant_id, d.amount) for d in call.draws] == [("sub", 10), ("gift", 5)]
    assert (call.credits, call.owed) == (20, 5)
    # Two days on, the scheduled grant is spendable and pays what was owed first.
    paid = explain(ACCOUNT, entries, t0 + timedelta(days=3))
    later = next(g for g in paid.grants if g.grant_id == "later")
    assert (paid.balance, paid.overage, paid.due_entries) == (2, 0, 2)
    assert (later.granted, later.paid_overage, later.remaining, later.draw_order) == (2, 5, 2, 1)
    assert later.why == (
        "priority 40, then never expires, then granted 2026-11-01T20:00:00Z (ledger seq 3);"
        " paid 5 owed credits when it became spendable"
    )
    assert paid.overage_why == "nothing is owed"


def test_hand_built_ledgers_explain_as_the_point_in_time_balance_folds_them() -> None:
    """The shapes the read models are tested on (tests/ledger_shapes.py: scheduled grants and
    their activation, overage payments, owed calls, holds, a void of a scheduled grant, an
    expiry; and a ledger written before issue 12), read back as the explain read does, at every
    instant they name, on both clocks: explain adds up, and when nothing more was due it shows
    the point-in-time balance's figures (services/history/as_of.py over the same entries)."""
    for book in (story(), legacy()):
        instants = sorted(
            {e.occurred_at for e in book.entries} | {e.recorded_at for e in book.entries}
        )
        for at in [*instants, *(t - timedelta(microseconds=1) for t in instants)]:
            for by in ("recorded", "occurred"):
                chosen = select_entries(book.account_id, book.entries, at, by)
                core = CoreEntries()
                explained = explain(book.account_id, [core.of(m) for m in chosen], at)
                check_sums(explained, whole_grants=False)
                rows = [m.model_dump() for m in book.entries]
                expected = as_of_figures(fold_entries(book.account_id, rows, at, by=by))
                shown = explained_figures(explained)
                assert shown == expected, (book.account_id, at, by)
