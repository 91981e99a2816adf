"""Invariants of the core over random mixed command histories of one account.

Every kind of command is mixed in: grants of every kind, priority, schedule and scope; calls of
random cost, status and endpoint; adjustments both ways; refunds of known and unknown requests;
voids of open, closed and unknown grants; holds placed, captured, released and left to expire;
settings changes; scheduler expiries. Times mostly move forward and sometimes jump back. The
history is folded the way the writer folds it (`decide` then `evolve_all`, in one process, so
the state's `consumptions` carry every request's lineage), and the invariants are checked after
every event of every step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from services.core import decide, evolve, evolve_all
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    AdjustBalance,
    AlertKind,
    AlertRaised,
    AutoReload,
    BucketKind,
    CaptureHold,
    ChangeSettings,
    Command,
    CommandRejected,
    ConsumeUsage,
    EntryReason,
    Event,
    ExpireDue,
    GrantCredits,
    LedgerEntry,
    PlaceHold,
    RefundRequest,
    ReleaseHold,
    VoidGrant,
)

ACCOUNT = "acct_42"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 12, 1, tzinfo=UTC)
ENDPOINTS = ("POST /v1/scanner/scan", "POST /v1/scanner/deep-scan", "GET /v1/reports")

# database=None: nothing written to an example database; each test stays bounded and fast.
BOUNDED = settings(max_examples=200, deadline=None, database=None)


def hours(n: int) -> datetime:
    return T0 + timedelta(hours=n)


# --- abstract operations; references to ids resolve against the history so far --------------


@dataclass(frozen=True, slots=True)
class Ref:
    """Which id a command names: one open now, any used so far, or one never used."""

    pool: str  # "open" (a bucket, hold or refundable request now), "any" or "unknown"
    back: int  # counted back from the most recent

    def resolve(self, open_now: Sequence[str], used: Sequence[str], unknown: str) -> str:
        if self.pool == "unknown":
            return unknown
        pool = open_now if self.pool == "open" and open_now else used
        return pool[-1 - self.back % len(pool)] if pool else unknown


@dataclass(frozen=True, slots=True)
class GrantOp:
    kind: BucketKind
    priority: int | None  # None: the kind's default
    amount: int
    effective: int  # hours relative to the command's time
    lifetime: int | None  # hours after `effective`; None: never expires
    applies_to: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class UsageOp:
    credits: int
    status_code: int
    endpoint: str


@dataclass(frozen=True, slots=True)
class AdjustOp:
    amount: int


@dataclass(frozen=True, slots=True)
class RefundOp:
    request: Ref
    amount: int | None


@dataclass(frozen=True, slots=True)
class VoidOp:
    grant: Ref


@dataclass(frozen=True, slots=True)
class HoldOp:
    reuse: Ref | None  # None: a fresh hold id; else an id that may be open (a duplicate)
    amount: int
    lifetime: int  # hours; <= 0 is rejected as already expired


@dataclass(frozen=True, slots=True)
class CaptureOp:
    hold: Ref
    amount: int | None
    reuse_request: Ref | None  # None: a fresh request id
    endpoint: str


@dataclass(frozen=True, slots=True)
class ReleaseOp:
    hold: Ref


@dataclass(frozen=True, slots=True)
class SettingsOp:
    credit_limit: int | None
    low_balance_threshold: int | None
    clear_low_balance_threshold: bool
    auto_reload: AutoReload | None
    clear_auto_reload: bool


@dataclass(frozen=True, slots=True)
class ExpireOp:
    pass


Op = (
    GrantOp
    | UsageOp
    | AdjustOp
    | RefundOp
    | VoidOp
    | HoldOp
    | CaptureOp
    | ReleaseOp
    | SettingsOp
    | ExpireOp
)


class Builder:
    """Turns operations into commands, folding as it goes so references can name open ids."""

    def __init__(self) -> None:
        self.state = AccountState(ACCOUNT)
        self.clock = 0
        self.grants: list[str] = []
        self.requests: list[str] = []
        self.holds: list[str] = []
        self.commands: list[Command] = []

    def add(self, dt: int, op: Op) -> None:
        command = self.command(len(self.commands), dt, op)
        self.state = evolve_all(self.state, decide(self.state, command, RECORDED_AT))
        self.commands.append(command)

    def command(self, index: int, dt: int, op: Op) -> Command:
        self.clock += dt
        at = hours(self.clock)
        command_id = f"cmd{index}"
        state = self.state
        open_holds = [h.hold_id for h in state.holds]
        if isinstance(op, GrantOp):
            grant_id = f"g{index}"
            self.grants.append(grant_id)
            effective = self.clock + op.effective
            return GrantCredits(
                account_id=ACCOUNT,
                command_id=grant_id,
                amount=op.amount,
                kind=op.kind,
                priority=DEFAULT_PRIORITY[op.kind] if op.priority is None else op.priority,
                source="",
                effective_at=hours(effective),
                expires_at=None if op.lifetime is None else hours(effective + op.lifetime),
                occurred_at=at,
                applies_to=op.applies_to,
            )
        if isinstance(op, UsageOp):
            request_id = f"r{index}"
            self.requests.append(request_id)
            return ConsumeUsage(
                ACCOUNT, request_id, op.endpoint, op.status_code, op.credits, at, "key_7"
            )
        if isinstance(op, AdjustOp):
            return AdjustBalance(ACCOUNT, command_id, op.amount, "ops", at)
        if isinstance(op, RefundOp):
            refundable = [r for r, c in state.consumptions.items() if c.refundable > 0]
            request_id = op.request.resolve(refundable, self.requests, f"r_unknown{index}")
            return RefundRequest(ACCOUNT, command_id, request_id, op.amount, "goodwill", at)
        if isinstance(op, VoidOp):
            open_grants = [b.grant_id for b in state.buckets]
            grant_id = op.grant.resolve(open_grants, self.grants, f"g_unknown{index}")
            return VoidGrant(ACCOUNT, command_id, grant_id, at)
        if isinstance(op, HoldOp):
            fresh = f"h{index}"
            hold_id = fresh if op.reuse is None else op.reuse.resolve(open_holds, self.holds, fresh)
            if hold_id not in self.holds:
                self.holds.append(hold_id)
            expires_at = hours(self.clock + op.lifetime)
            return PlaceHold(ACCOUNT, command_id, hold_id, op.amount, expires_at, at)
        if isinstance(op, CaptureOp):
            hold_id = op.hold.resolve(open_holds, self.holds, f"h_unknown{index}")
            fresh = f"cap{index}"
            reuse = op.reuse_request
            request_id = fresh if reuse is None else reuse.resolve([], self.requests, fresh)
            if request_id not in self.requests:
                self.requests.append(request_id)
            return CaptureHold(ACCOUNT, command_id, hold_id, op.amount, request_id, op.endpoint, at)
        if isinstance(op, ReleaseOp):
            hold_id = op.hold.resolve(open_holds, self.holds, f"h_unknown{index}")
            return ReleaseHold(ACCOUNT, command_id, hold_id, at)
        if isinstance(op, SettingsOp):
            return ChangeSettings(
                account_id=ACCOUNT,
                command_id=command_id,
                occurred_at=at,
                low_balance_threshold=op.low_balance_threshold,
                auto_reload=op.auto_reload,
                credit_limit=op.credit_limit,
                clear_low_balance_threshold=op.clear_low_balance_threshold,
                clear_auto_reload=op.clear_auto_reload,
            )
        return ExpireDue(ACCOUNT, command_id, at)


def build(steps: Sequence[tuple[int, Op]]) -> list[Command]:
    """Concrete commands: each step moves the clock by its hours (sometimes back)."""
    builder = Builder()
    for dt, op in steps:
        builder.add(dt, op)
    return builder.commands


REFS = st.builds(
    Ref, st.sampled_from(["open", "open", "open", "any", "unknown"]), st.integers(0, 4)
)
GRANT_OPS = st.builds(
    GrantOp,
    kind=st.sampled_from(BucketKind),
    priority=st.sampled_from([None, None, 0, 15, 99]),
    amount=st.integers(1, 60),
    effective=st.integers(-4, 4),
    lifetime=st.none() | st.integers(1, 12),
    applies_to=st.none()
    | st.none()
    | st.none()
    | st.lists(st.sampled_from(ENDPOINTS), min_size=1, max_size=2).map(tuple),
)
USAGE_OPS = st.builds(
    UsageOp,
    credits=st.integers(0, 10) | st.integers(0, 40),
    status_code=st.sampled_from([200, 200, 200, 404, 500]),
    endpoint=st.sampled_from(ENDPOINTS),
)
ADJUST_OPS = st.builds(AdjustOp, amount=st.integers(-30, 30).filter(lambda n: n != 0))
REFUND_OPS = st.builds(RefundOp, request=REFS, amount=st.none() | st.integers(1, 40))
VOID_OPS = st.builds(VoidOp, grant=REFS)
HOLD_OPS = st.builds(
    HoldOp,
    reuse=st.none() | st.none() | st.none() | REFS,
    amount=st.integers(1, 8) | st.integers(1, 40),
    lifetime=st.sampled_from([2, 4, 1, 8, 24, 3, 12, 6, 0, -1]),
)
CAPTURE_OPS = st.builds(
    CaptureOp,
    hold=REFS,
    amount=st.none() | st.integers(0, 45),
    reuse_request=st.none() | st.none() | st.none() | REFS,
    endpoint=st.sampled_from(ENDPOINTS),
)
RELEASE_OPS = st.builds(ReleaseOp, hold=REFS)
SETTINGS_OPS = st.builds(
    SettingsOp,
    credit_limit=st.none() | st.integers(0, 50),
    low_balance_threshold=st.none() | st.integers(0, 40),
    clear_low_balance_threshold=st.booleans(),
    auto_reload=st.none()
    | st.builds(AutoReload, st.integers(0, 40), st.integers(1, 50), st.integers(1, 3)),
    clear_auto_reload=st.booleans(),
)
OPS: st.SearchStrategy[Op] = st.one_of(
    GRANT_OPS,
    GRANT_OPS,
    USAGE_OPS,
    USAGE_OPS,
    USAGE_OPS,
    ADJUST_OPS,
    REFUND_OPS,
    REFUND_OPS,
    VOID_OPS,
    HOLD_OPS,
    HOLD_OPS,
    HOLD_OPS,
    CAPTURE_OPS,
    CAPTURE_OPS,
    RELEASE_OPS,
    SETTINGS_OPS,
    st.just(ExpireOp()),
)
# Hours between commands: mostly forward, sometimes back.
CLOCK_STEPS = st.sampled_from([0, 0, 1, 1, 1, 2, 3, 5, -1, -4])


def histories() -> st.SearchStrategy[list[Command]]:
    return st.lists(st.tuples(CLOCK_STEPS, OPS), min_size=15, max_size=40).map(build)


# --- folding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    command: Command
    events: tuple[Event, ...]
    states: tuple[AccountState, ...]  # before the step, then after each of its events

    @property
    def before(self) -> AccountState:
        return self.states[0]

    @property
    def after(self) -> AccountState:
        return self.states[-1]


def fold(commands: Sequence[Command]) -> list[Step]:
    state = AccountState(ACCOUNT)
    steps: list[Step] = []
    for command in commands:
        events = decide(state, command, RECORDED_AT)
        states = [state]
        for event in events:
            states.append(evolve(states[-1], event))
        folded = evolve_all(state, events)
        assert folded == states[-1]
        steps.append(Step(command, events, tuple(states)))
        state = folded
    return steps


def refunded_request(entry: LedgerEntry) -> str:
    assert entry.source.startswith("refund:"), entry.source
    return entry.source.removeprefix("refund:")


def is_due_expiry(entry: LedgerEntry, at: datetime) -> bool:
    """What `decide` lets happen before any command: an expiry (a bucket's or a hold's), or a
    scheduled grant becoming spendable (with what it pays of an overage)."""
    expiring_hold = entry.reason is EntryReason.RELEASE and entry.metadata["reason"] == "expired"
    activation = entry.reason is EntryReason.GRANT and (
        "activated" in entry.metadata or "pays_overage" in entry.metadata
    )
    due = entry.reason is EntryReason.EXPIRY or expiring_hold or activation
    return due and entry.occurred_at <= at


def check_invariants(commands: Sequence[Command]) -> None:
    seq = balance = reserved = 0
    consumed: defaultdict[str, int] = defaultdict(int)
    refunded: defaultdict[str, int] = defaultdict(int)
    low_armed = depleted_armed = True
    for step in fold(commands):
        command, after = step.command, step.after
        rejections = [i for i, e in enumerate(step.events) if isinstance(e, CommandRejected)]
        assert len(rejections) <= 1, step.events
        for event, state in zip(step.events, step.states[1:], strict=True):
            if isinstance(event, LedgerEntry):
                seq += 1
                assert event.seq == seq
                assert event.balance_after == balance + event.delta
                balance = event.balance_after
                reserved += event.reserved_delta
                if event.reason is EntryReason.CONSUME and event.request_id is not None:
                    assert event.delta < 0
                    consumed[event.request_id] -= event.delta
                if event.reason is EntryReason.REFUND:
                    request_id = refunded_request(event)
                    assert event.delta > 0
                    refunded[request_id] += event.delta
                    assert refunded[request_id] <= consumed[request_id], request_id
            elif isinstance(event, AlertRaised):
                if event.kind is AlertKind.LOW_BALANCE:
                    line = state.settings.low_balance_threshold
                    assert low_armed, "low_balance fired again without a crossing back"
                    assert line is not None and event.available < line
                    low_armed = False
                elif event.kind is AlertKind.DEPLETED:
                    assert depleted_armed, "depleted fired again without a crossing back"
                    assert event.available <= 0
                    depleted_armed = False
            assert (state.seq, state.balance) == (seq, balance)
            assert all(bucket.remaining >= 0 for bucket in state.buckets)
            assert state.reserved == sum(h.amount for h in state.holds) == reserved >= 0
            assert all(h.amount > 0 for h in state.holds)
            assert state.available == state.balance - state.reserved
            line = state.settings.low_balance_threshold
            if line is None or state.available >= line:
                low_armed = True
            if state.available > 0:
                depleted_armed = True

        # A call is a fact: its whole price is drawn or owed, never dropped.
        if isinstance(command, ConsumeUsage) and command.credits > 0:
            charged = sum(
                -e.delta
                for e in step.events
                if isinstance(e, LedgerEntry)
                and e.reason is EntryReason.CONSUME
                and e.request_id == command.request_id
            )
            assert charged == command.credits, (charged, command)
        # Owed credit is tied to no bucket: the pot is what is left when the buckets are counted.
        assert after.balance == sum(b.remaining for b in after.buckets) + after.pot
        assert after.unbucketed == 0 or after.overage == 0

        # A rejected command writes only the expiries that were due before it.
        if rejections:
            (at,) = rejections
            for event in step.events[:at]:
                if isinstance(event, LedgerEntry):
                    assert is_due_expiry(event, command.occurred_at), event
            assert not any(isinstance(e, LedgerEntry) for e in step.events[at:])

        # The lineage in state agrees with the ledger, request by request.
        for request_id, consumption in after.consumptions.items():
            assert sum(d.amount for d in consumption.draws) == consumed[request_id]
            assert consumption.refundable == consumed[request_id] - refunded[request_id] >= 0
            assert all(0 <= d.refunded <= d.amount for d in consumption.draws)


@settings(BOUNDED, max_examples=250)
@given(histories())
def test_mixed_histories_keep_every_ledger_invariant(commands: list[Command]) -> None:
    check_invariants(commands)


@settings(BOUNDED, max_examples=150)
@given(histories())
def test_deciding_the_same_history_twice_gives_equal_events(commands: list[Command]) -> None:
    first = [step.events for step in fold(commands)]
    second = [step.events for step in fold(list(commands))]
    assert first == second
    entries = [e for events in first for e in events if isinstance(e, LedgerEntry)]
    assert len({e.entry_id for e in entries}) == len(entries)


# --- examples the histories above cover, pinned ------------------------------------------------


LATEST = Ref("open", 0)
UNKNOWN = Ref("unknown", 0)


def test_an_example_mixing_every_command_keeps_the_invariants() -> None:
    scan, reports = ENDPOINTS[0], ENDPOINTS[2]
    commands = build(
        [
            (0, SettingsOp(5, 10, False, AutoReload(5, 20, 1), False)),
            (0, GrantOp(BucketKind.SUBSCRIPTION, None, 20, 0, 6, None)),
            (0, GrantOp(BucketKind.PURCHASED, None, 10, 0, None, (reports,))),
            (1, UsageOp(8, 200, scan)),
            (1, UsageOp(4, 404, scan)),
            (0, HoldOp(None, 6, 2)),
            (0, CaptureOp(LATEST, 4, None, scan)),
            (0, HoldOp(None, 3, 1)),
            (0, RefundOp(Ref("any", 2), 3)),
            (0, RefundOp(Ref("any", 2), None)),
            (0, RefundOp(Ref("any", 2), 1)),
            (0, RefundOp(UNKNOWN, 1)),
            (0, AdjustOp(-2)),
            (0, AdjustOp(-99)),
            (5, UsageOp(30, 200, reports)),
            (-4, VoidOp(LATEST)),
            (0, VoidOp(UNKNOWN)),
            (0, ReleaseOp(UNKNOWN)),
            (0, GrantOp(BucketKind.GIFT, 99, 5, 0, 1, None)),
            (3, ExpireOp()),
        ]
    )
    check_invariants(commands)
    steps = fold(commands)
    assert len({type(step.command) for step in steps}) == 10
    codes = [e.code for step in steps for e in step.events if isinstance(e, CommandRejected)]
    assert codes == [
        "already-refunded",
        "unknown-request",
        "insufficient-credits",
        "unknown-grant",
        "unknown-hold",
    ]
    reasons = {e.reason for step in steps for e in step.events if isinstance(e, LedgerEntry)}
    assert reasons == set(EntryReason)


def test_a_hold_never_reserves_more_than_is_available() -> None:
    commands = build(
        [
            (0, GrantOp(BucketKind.GIFT, None, 10, 0, None, None)),
            (0, HoldOp(None, 7, 4)),
            (0, HoldOp(None, 4, 4)),
        ]
    )
    last = fold(commands)[-1]
    assert [e.code for e in last.events if isinstance(e, CommandRejected)] == [
        "insufficient-available"
    ]
    assert (last.after.reserved, last.after.available) == (7, 3)


def expired_credits(state: AccountState, at: datetime) -> list[tuple[str, int]]:
    """Buckets still holding credits at `at` although they expired at or before it."""
    return [
        (b.grant_id, b.remaining)
        for b in state.buckets
        if b.remaining > 0 and b.expires_at is not None and b.expires_at <= at
    ]


# No shrink phase: while this fails, shrinking 15+ step histories alone would take ~30 s; the
# minimised case is test_a_grant_that_expired_before_it_was_granted_leaves_no_credits_available.
@settings(BOUNDED, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(histories())
def test_no_step_leaves_credits_in_a_bucket_past_its_expiry(commands: list[Command]) -> None:
    """Every command first lets due expiries happen, so none may leave expired credits behind
    (they would count in `available` although no call can ever draw them)."""
    for step in fold(commands):
        at = step.command.occurred_at
        left = expired_credits(step.after, at)
        assert left == [], f"{type(step.command).__name__} at {at} left expired credits {left}"


# --- refunds into a bucket that expired while empty (regression) ------------------------------


def test_refund_into_a_bucket_that_expired_while_empty_does_not_depend_on_unrelated_entries() -> (
    None
):
    """g1 (5 credits, expires at h10) is drained by r1 at h5, then r1 is refunded at h12.

    `evolve` prunes an empty bucket past its expiry only when a later entry's `occurred_at`
    reaches it. Before the refund path treated an expired bucket as closed, the refund put the 5
    credits into the dead g1 when nothing had pruned it (and the next command expired them, with
    an expiry entry dated h10 after the refund at h12), but gave them back outside any bucket
    when an unrelated entry at h11 had pruned it: the two histories ended 6 credits apart.
    """
    grant = GrantCredits(
        ACCOUNT, "g1", 5, BucketKind.GIFT, 30, "", hours(0), hours(10), occurred_at=hours(0)
    )
    use = ConsumeUsage(ACCOUNT, "r1", ENDPOINTS[0], 200, 5, hours(5), "key_7")
    refund = RefundRequest(ACCOUNT, "rf1", "r1", None, "goodwill", hours(12))
    expire = ExpireDue(ACCOUNT, "exp1", hours(13))
    unrelated = AdjustBalance(ACCOUNT, "adj1", 1, "goodwill", hours(11))

    plain = fold([grant, use, refund, expire])
    with_adjustment = fold([grant, use, unrelated, refund, expire])

    assert with_adjustment[-1].after.balance - plain[-1].after.balance == 1
    assert expired_credits(plain[2].after, hours(12)) == []
    check_invariants([grant, use, refund, expire])


# --- a violation found by the histories above, minimised ---------------------------------------


def test_a_grant_that_expired_before_it_was_granted_leaves_no_credits_available() -> None:
    """Found by `test_no_step_leaves_credits_in_a_bucket_past_its_expiry`.

    A grant of 10 at h5 whose bucket expired at h2 (a backdated grant; the wire schema accepts
    it, and `decide._grant` checks nothing) opens a bucket already past its expiry: after the
    command `available` is 10, although no call can ever draw those credits. The next command,
    even a free call, expires them with an entry dated h2, after the grant entry dated h5.
    Expected: no credits left in an expired bucket after the grant (available 0, whether the
    grant is rejected or expires at once). Actual: available 10, bucket g1 holds 10.
    """
    grant = GrantCredits(
        ACCOUNT, "g1", 10, BucketKind.GIFT, 30, "", hours(0), hours(2), occurred_at=hours(5)
    )
    (step,) = fold([grant])
    assert expired_credits(step.after, hours(5)) == []
    assert step.after.available == 0


def test_decide_and_evolve_returns_the_state_its_events_fold_to() -> None:
    from services.core.decide import decide_and_evolve
    from services.core.evolve import evolve_all
    from services.core.model import AccountState, BucketKind, ConsumeUsage, GrantCredits

    t = datetime(2026, 11, 1, tzinfo=UTC)
    state = AccountState("acct")
    for command in (
        GrantCredits("acct", "g", 10, BucketKind.GIFT, 30, "", t, None, t),
        ConsumeUsage("acct", "r1", "POST /x", 500, 4, t),
        ConsumeUsage("acct", "r2", "POST /x", 200, 12, t),
    ):
        events, after = decide_and_evolve(state, command, t)
        assert after == evolve_all(state, events)
        state = after
    assert (state.seq, state.balance, state.overage) == (5, -2, 2)  # the rest is owed
