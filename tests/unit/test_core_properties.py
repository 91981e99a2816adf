"""Properties of decide + evolve over random grants and usage (bounded hypothesis runs).

Each history starts with a credit limit (often 0, sometimes generous), then mixes grants of every
kind, priority, schedule and endpoint scope with calls of random cost, status and time. Times are
not monotonic, so expiries happen in the middle of histories.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import decide, evolve, evolve_all
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    BucketKind,
    ChangeSettings,
    Command,
    ConsumeUsage,
    EntryReason,
    Event,
    GrantCredits,
    LedgerEntry,
)

ACCOUNT = "acct_42"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 12, 1, tzinfo=UTC)
ENDPOINTS = ("POST /v1/scanner/scan", "POST /v1/scanner/deep-scan", "GET /v1/reports")
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

# database=None: nothing written to an example database; each test stays bounded and fast.
BOUNDED = settings(max_examples=200, deadline=None, database=None)


def hours(n: int) -> datetime:
    return T0 + timedelta(hours=n)


@dataclass(frozen=True, slots=True)
class GrantSpec:
    kind: BucketKind
    priority: int | None  # None: the kind's default priority
    amount: int
    effective: int  # hours after T0
    lifetime: int | None  # hours; None: never expires
    applies_to: tuple[str, ...] | None

    def build(self, index: int) -> GrantCredits:
        return GrantCredits(
            account_id=ACCOUNT,
            command_id=f"g{index}",
            amount=self.amount,
            kind=self.kind,
            priority=DEFAULT_PRIORITY[self.kind] if self.priority is None else self.priority,
            source="",
            effective_at=hours(self.effective),
            expires_at=None if self.lifetime is None else hours(self.effective + self.lifetime),
            occurred_at=hours(self.effective),
            applies_to=self.applies_to,
        )


@dataclass(frozen=True, slots=True)
class UsageSpec:
    endpoint: str
    status_code: int
    credits: int
    at: int  # hours after T0
    key_id: str | None

    def build(self, index: int) -> ConsumeUsage:
        return ConsumeUsage(
            account_id=ACCOUNT,
            request_id=f"r{index}",
            endpoint=self.endpoint,
            status_code=self.status_code,
            credits=self.credits,
            occurred_at=hours(self.at),
            key_id=self.key_id,
        )


GRANT_SPECS = st.builds(
    GrantSpec,
    kind=st.sampled_from(BucketKind),
    priority=st.sampled_from([None, None, 0, 15, 15, 99]),
    amount=st.integers(1, 100),
    effective=st.integers(0, 200),
    lifetime=st.none() | st.integers(1, 200),
    applies_to=st.none() | st.none() | st.lists(st.sampled_from(ENDPOINTS), max_size=2).map(tuple),
)
USAGE_SPECS = st.builds(
    UsageSpec,
    endpoint=st.sampled_from(ENDPOINTS),
    status_code=st.sampled_from([200, 200, 404, 500]),
    credits=st.integers(0, 50),
    at=st.integers(0, 400),
    key_id=st.sampled_from([None, "key_7"]),
)


def build(limit: int, specs: list[GrantSpec | UsageSpec]) -> list[Command]:
    """Each command's id is its position, so ids never collide."""
    opening = ChangeSettings(ACCOUNT, "settings", occurred_at=T0, credit_limit=limit)
    return [opening, *(spec.build(index) for index, spec in enumerate(specs))]


def histories() -> st.SearchStrategy[list[Command]]:
    limits = st.sampled_from([0, 0, 25, 1_000_000])
    specs = st.lists(GRANT_SPECS | USAGE_SPECS | USAGE_SPECS, max_size=30)
    return st.builds(build, limits, specs)


@dataclass(frozen=True, slots=True)
class Step:
    command: Command
    before: AccountState
    events: tuple[Event, ...]

    @property
    def entries(self) -> list[LedgerEntry]:
        return [e for e in self.events if isinstance(e, LedgerEntry)]


@dataclass(frozen=True, slots=True)
class Run:
    steps: list[Step]
    states: list[AccountState]  # the first, then one after every event

    @property
    def entries(self) -> list[LedgerEntry]:
        return [entry for step in self.steps for entry in step.entries]

    @property
    def final(self) -> AccountState:
        return self.states[-1]


def fold(commands: Sequence[Command]) -> Run:
    state = AccountState(ACCOUNT)
    states = [state]
    steps: list[Step] = []
    for command in commands:
        events = decide(state, command, RECORDED_AT)
        steps.append(Step(command, state, events))
        for event in events:
            state = evolve(state, event)
            states.append(state)
    return Run(steps, states)


def call_entries(step: Step) -> list[LedgerEntry]:
    """The entries of a usage step that belong to the call (not expiries it let happen)."""
    assert isinstance(step.command, ConsumeUsage)
    rid = step.command.request_id
    return [e for e in step.entries if e.source in (f"request:{rid}", f"refund:{rid}")]


def _scheduled_and_voided(entries: Sequence[LedgerEntry]) -> int:
    """Credit of grants voided while still scheduled: it never arrived."""
    total = 0
    for entry in entries:
        value = entry.metadata.get("scheduled") if entry.reason is EntryReason.VOID else None
        total += value if isinstance(value, int) else 0
    return total


def owed(entries: Sequence[LedgerEntry]) -> int:
    total = 0
    for entry in entries:
        value = entry.metadata.get("owed")
        total += value if isinstance(value, int) else 0
    return total


def expected_draws(
    state: AccountState, usage: ConsumeUsage
) -> tuple[list[tuple[str | None, int]], int]:
    """An independent oracle of the drawdown rule: (draws, uncharged) for a call."""
    usable = [
        b
        for b in state.buckets
        if b.remaining > 0
        and b.effective_at <= usage.occurred_at
        and (b.expires_at is None or usage.occurred_at < b.expires_at)
        and (b.applies_to is None or usage.endpoint in b.applies_to)
    ]
    usable.sort(key=lambda b: (b.priority, b.expires_at or FAR_FUTURE, b.granted_seq))
    left = usage.credits
    result: list[tuple[str | None, int]] = []
    for bucket in usable:
        take = min(left, bucket.remaining)
        if take:
            result.append((bucket.grant_id, take))
            left -= take
    # Then credit tied to no grant, when there is some; the rest is owed, whatever the limit.
    unbucketed = max(0, state.balance - sum(b.remaining for b in state.buckets))
    if min(left, unbucketed):
        result.append((None, min(left, unbucketed)))
        left -= min(left, unbucketed)
    if left:
        result.append((None, left))
    return result, left


@BOUNDED
@given(histories())
def test_seq_runs_from_one_without_gaps(commands: list[Command]) -> None:
    run = fold(commands)
    assert [e.seq for e in run.entries] == list(range(1, len(run.entries) + 1))
    assert run.final.seq == len(run.entries)


@BOUNDED
@given(histories())
def test_each_balance_after_is_the_previous_plus_delta(commands: list[Command]) -> None:
    previous = 0
    for entry in fold(commands).entries:
        assert entry.balance_after == previous + entry.delta
        previous = entry.balance_after


@BOUNDED
@given(histories())
def test_final_balance_is_grants_minus_charged_calls_minus_expiries(
    commands: list[Command],
) -> None:
    run = fold(commands)
    # Grants count once spendable: a scheduled grant whose instant has not come adds nothing.
    granted = (
        sum(c.amount for c in commands if isinstance(c, GrantCredits))
        - sum(b.pending for b in run.final.buckets)
        - _scheduled_and_voided(run.entries)
    )
    charged = 0
    for step in run.steps:
        if isinstance(step.command, ConsumeUsage) and step.command.status_code < 400:
            charged += step.command.credits
    expired = -sum(e.delta for e in run.entries if e.reason is EntryReason.EXPIRY)
    assert run.final.balance == sum(e.delta for e in run.entries) == granted - charged - expired


@BOUNDED
@given(histories())
def test_every_call_is_charged_in_full_drawn_or_owed(
    commands: list[Command],
) -> None:
    for step in fold(commands).steps:
        if isinstance(step.command, ConsumeUsage) and step.command.credits > 0:
            entries = call_entries(step)
            consumed = -sum(e.delta for e in entries if e.reason is EntryReason.CONSUME)
            assert consumed == step.command.credits


@BOUNDED
@given(histories())
def test_with_a_generous_credit_limit_balance_is_grants_minus_successful_calls(
    commands: list[Command],
) -> None:
    commands = [ChangeSettings(ACCOUNT, "settings", T0, credit_limit=1_000_000), *commands[1:]]
    run = fold(commands)
    granted = (
        sum(c.amount for c in commands if isinstance(c, GrantCredits))
        - sum(b.pending for b in run.final.buckets)
        - _scheduled_and_voided(run.entries)
    )
    successful = sum(
        c.credits for c in commands if isinstance(c, ConsumeUsage) and c.status_code < 400
    )
    expired = -sum(e.delta for e in run.entries if e.reason is EntryReason.EXPIRY)
    assert run.final.balance == granted - successful - expired


@BOUNDED
@given(histories())
def test_no_bucket_ever_goes_below_zero(commands: list[Command]) -> None:
    for state in fold(commands).states:
        assert all(bucket.remaining >= 0 for bucket in state.buckets)


@BOUNDED
@given(histories())
def test_credit_outside_buckets_is_either_unbucketed_or_owed(commands: list[Command]) -> None:
    for state in fold(commands).states:
        assert state.unbucketed >= 0 and state.overage >= 0
        assert state.unbucketed == 0 or state.overage == 0
        assert state.balance == sum(b.remaining for b in state.buckets) + state.pot


@BOUNDED
@given(histories())
def test_balance_is_bucket_remainings_minus_uncovered_overdraft(commands: list[Command]) -> None:
    run = fold(commands)
    overdraft = -sum(e.delta for e in run.entries if e.bucket_grant_id is None)
    assert run.final.balance == sum(b.remaining for b in run.final.buckets) - overdraft


@BOUNDED
@given(histories())
def test_each_bucket_is_its_grant_plus_the_deltas_naming_it(commands: list[Command]) -> None:
    run = fold(commands)
    named: defaultdict[str, int] = defaultdict(int)
    for entry in run.entries:
        if entry.bucket_grant_id is not None:
            named[entry.bucket_grant_id] += entry.delta
    open_buckets = {b.grant_id: b.remaining for b in run.final.buckets}
    for command in commands:
        if isinstance(command, GrantCredits):
            assert named[command.command_id] == open_buckets.get(command.command_id, 0)


@BOUNDED
@given(histories())
def test_failed_calls_net_to_zero_per_bucket(commands: list[Command]) -> None:
    for step in fold(commands).steps:
        command = step.command
        if not isinstance(command, ConsumeUsage):
            continue
        entries = call_entries(step)
        if command.credits == 0:
            assert entries == []
            continue
        net = sum(e.delta for e in entries)
        assert net == (0 if command.status_code >= 400 else -command.credits)
        if command.status_code < 400:
            assert all(e.reason is EntryReason.CONSUME for e in entries)
            continue
        per_bucket: defaultdict[str | None, int] = defaultdict(int)
        for entry in entries:
            per_bucket[entry.bucket_grant_id] += entry.delta
        assert set(per_bucket.values()) <= {0}
        refunds = [e for e in entries if e.reason is EntryReason.REFUND]
        reason = "client_error" if command.status_code < 500 else "server_error"
        assert {e.metadata["reason"] for e in refunds} <= {reason}
        assert {e.source for e in refunds} <= {f"refund:{command.request_id}"}


@BOUNDED
@given(histories())
def test_consumes_follow_the_drawdown_order_and_the_credit_limit(commands: list[Command]) -> None:
    for step in fold(commands).steps:
        command = step.command
        if not isinstance(command, ConsumeUsage) or command.credits == 0:
            continue
        entries = call_entries(step)
        # What event time made due before the call (expiries, activations) folds in first.
        state = step.before
        for event in step.events:
            if isinstance(event, LedgerEntry) and event in entries:
                break
            state = evolve(state, event)
        consumes = [
            (e.bucket_grant_id, -e.delta) for e in entries if e.reason is EntryReason.CONSUME
        ]
        assert all(delta > 0 for _, delta in consumes), "no 0-delta consume: nothing is free"
        assert (consumes, owed(entries)) == expected_draws(state, command)


@BOUNDED
@given(histories())
def test_no_bucket_with_credits_outlives_its_expiry(commands: list[Command]) -> None:
    run = fold(commands)
    state = run.states[0]
    for step in run.steps:
        state = evolve_all(step.before, step.events)
        at = step.command.occurred_at
        leftovers = [b for b in state.buckets if b.remaining > 0 and b.expires_at is not None]
        assert all(b.expires_at is not None and b.expires_at > at for b in leftovers)


@BOUNDED
@given(histories())
def test_replaying_the_same_commands_gives_identical_events(commands: list[Command]) -> None:
    first = fold(commands)
    second = fold(list(commands))
    assert [s.events for s in first.steps] == [s.events for s in second.steps]
    assert [e.entry_id for e in first.entries] == [e.entry_id for e in second.entries]
    assert len({e.entry_id for e in first.entries}) == len(first.entries)
