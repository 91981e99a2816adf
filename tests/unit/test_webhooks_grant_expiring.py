"""The `grant_expiring` alert: once per grant, `grant_expiring_notice_s` (default 3 days) before
a grant with credit left expires; due for the scheduler; kept in the writer's snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.core.decide import decide_and_evolve
from services.core.model import (
    DEFAULT_PRIORITY,
    AccountState,
    AlertKind,
    AlertRaised,
    BucketKind,
    ChangeSettings,
    Command,
    ConsumeUsage,
    Event,
    ExpireDue,
    GrantCredits,
)
from services.core.run import decide_run
from services.core.snapshot import state_from_json, state_to_json

ACCOUNT = "acct_notice"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECORDED_AT = datetime(2026, 12, 1, tzinfo=UTC)
NOTICE = timedelta(days=3)


def grant(
    command_id: str, amount: int, expires_at: datetime | None, at: datetime = T0
) -> GrantCredits:
    return GrantCredits(
        account_id=ACCOUNT, command_id=command_id, amount=amount, kind=BucketKind.GIFT,
        priority=DEFAULT_PRIORITY[BucketKind.GIFT], source="", effective_at=at,
        expires_at=expires_at, occurred_at=at,
    )  # fmt: skip


def call(request_id: str, credits: int, at: datetime) -> ConsumeUsage:
    return ConsumeUsage(ACCOUNT, request_id, "POST /v1/scan", 200, credits, at)


def tick(at: datetime) -> ExpireDue:
    return ExpireDue(ACCOUNT, f"expire:{at.isoformat()}", at)


def run(commands: Sequence[Command]) -> tuple[list[Event], AccountState]:
    state = AccountState(ACCOUNT)
    events: list[Event] = []
    for command in commands:
        decided, state = decide_and_evolve(state, command, RECORDED_AT)
        events.extend(decided)
    return events, state


def notices(events: Sequence[Event]) -> list[AlertRaised]:
    return [e for e in events if isinstance(e, AlertRaised) and e.kind is AlertKind.GRANT_EXPIRING]


def test_a_notice_goes_out_three_days_before_expiry_once() -> None:
    expires = T0 + timedelta(days=30)
    notice_at = expires - NOTICE
    events, state = run(
        [
            grant("g1", 100, expires),
            call("r1", 1, notice_at - timedelta(seconds=1)),  # before the window: nothing
            tick(notice_at),  # the scheduler's command at the notice instant
            call("r2", 1, notice_at + timedelta(hours=1)),  # noticed already: nothing more
            tick(notice_at + timedelta(days=1)),
        ]
    )
    [alert] = notices(events)
    assert alert.occurred_at == notice_at
    assert alert.details == {
        "grant_id": "g1",
        "expires_at": expires.isoformat(),
        "remaining": 99,
        "kind": "gift",
    }
    assert alert.alert_id == f"{ACCOUNT}:{alert.after_seq}:grant_expiring:g1"
    assert state.buckets[0].expiry_noticed


def test_the_scheduler_is_cued_at_the_notice_instant_and_not_after_it() -> None:
    expires = T0 + timedelta(days=30)
    _, state = run([grant("g1", 100, expires)])
    assert state.next_due_at() == expires - NOTICE
    _, noticed = run([grant("g1", 100, expires), tick(expires - NOTICE)])
    assert noticed.next_due_at() == expires  # the expiry itself is still due


def test_a_grant_made_inside_the_window_is_noticed_by_its_own_command() -> None:
    expires = T0 + timedelta(days=1)
    events, _ = run([grant("g1", 5, expires)])
    [alert] = notices(events)
    assert alert.occurred_at == T0 and alert.details["remaining"] == 5


def test_a_spent_grant_or_one_that_never_expires_is_not_noticed() -> None:
    expires = T0 + timedelta(days=10)
    events, state = run(
        [
            grant("g1", 5, expires),
            grant("g2", 50, None),
            call("r1", 5, T0 + timedelta(hours=1)),  # g1 spent before its window
            tick(expires - NOTICE),
        ]
    )
    assert notices(events) == []
    assert state.next_due_at() is None  # nothing left to notice or expire with credit


def test_two_grants_noticed_at_one_instant_have_distinct_ids() -> None:
    expires = T0 + timedelta(days=2)
    events, _ = run([grant("g1", 5, expires), grant("g2", 5, expires)])
    ids = [a.alert_id for a in notices(events)]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_the_notice_time_is_an_account_setting_and_zero_turns_it_off() -> None:
    expires = T0 + timedelta(days=30)
    week = ChangeSettings(ACCOUNT, "s1", T0, grant_expiring_notice_s=7 * 86_400)
    events, _ = run([week, grant("g1", 10, expires), tick(expires - timedelta(days=7))])
    assert [a.occurred_at for a in notices(events)] == [expires - timedelta(days=7)]
    off = ChangeSettings(ACCOUNT, "s1", T0, grant_expiring_notice_s=0)
    events, state = run([off, grant("g1", 10, expires), tick(expires - timedelta(hours=1))])
    assert notices(events) == [] and state.next_due_at() == expires


def test_an_expiry_due_in_the_same_command_says_grant_expired_only() -> None:
    expires = T0 + timedelta(days=30)
    events, _ = run([grant("g1", 10, expires), tick(expires + timedelta(seconds=1))])
    kinds = [e.kind for e in events if isinstance(e, AlertRaised)]
    assert AlertKind.GRANT_EXPIRED in kinds and AlertKind.GRANT_EXPIRING not in kinds


def test_decide_run_agrees_with_one_command_at_a_time() -> None:
    expires = T0 + timedelta(days=5)
    at = expires - NOTICE
    commands: list[Command] = [grant("g1", 100, expires)]
    commands += [call(f"r{i}", 1, at + timedelta(seconds=i - 3)) for i in range(6)]
    one_by_one, state = run(commands)
    batched, batched_state = decide_run(AccountState(ACCOUNT), [(c, RECORDED_AT) for c in commands])
    assert [e for events in batched for e in events] == one_by_one
    assert batched_state == state
    assert len(notices(one_by_one)) == 1


def test_the_snapshot_keeps_the_notice_and_the_setting() -> None:
    expires = T0 + timedelta(days=30)
    six_hours = ChangeSettings(ACCOUNT, "s1", T0, grant_expiring_notice_s=6 * 3600)
    _, state = run([six_hours, grant("g1", 10, expires), tick(expires - timedelta(hours=6))])
    back = state_from_json(ACCOUNT, state.seq, state.balance, state_to_json(state), {})
    assert back.buckets[0].expiry_noticed
    assert back.settings.grant_expiring_notice_s == 6 * 3600
    assert back.next_due_at() == state.next_due_at() == expires
