"""decide_run folds an account's commands to exactly what `decide_and_evolve` one by one gives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core import run
from services.core.decide import decide_and_evolve
from services.core.model import (
    AccountState,
    AutoReload,
    BucketKind,
    ChangeSettings,
    Command,
    ConsumeUsage,
    Event,
)
from services.core.run import decide_run
from tests.unit.test_core_properties import (
    ACCOUNT,
    BOUNDED,
    GRANT_SPECS,
    RECORDED_AT,
    USAGE_SPECS,
    GrantSpec,
    UsageSpec,
    histories,
    hours,
)

SETTINGS = st.builds(
    lambda index, low, reload, limit: ChangeSettings(
        ACCOUNT,
        f"settings{index}",
        occurred_at=hours(index),
        low_balance_threshold=low,
        auto_reload=reload,
        credit_limit=limit,
    ),
    st.integers(0, 400),
    st.none() | st.integers(-10, 300),
    st.none() | st.builds(AutoReload, st.integers(0, 300), st.integers(1, 50), st.integers(0, 2)),
    st.none() | st.sampled_from([0, 30]),
)


def _build(specs: list[GrantSpec | UsageSpec | ChangeSettings]) -> list[Command]:
    return [s if isinstance(s, ChangeSettings) else s.build(n) for n, s in enumerate(specs)]


# Long runs of calls between grants, settings and the odd repeated request id, so plain calls,
# crossings and expiries all happen inside one run.
BIG_GRANTS = GRANT_SPECS.map(lambda spec: replace(spec, amount=spec.amount * 20))
OK_CALLS = USAGE_SPECS.map(lambda spec: replace(spec, status_code=200))
MIXED = st.lists(
    GRANT_SPECS | BIG_GRANTS | USAGE_SPECS | OK_CALLS | OK_CALLS | SETTINGS, max_size=60
).map(_build)


def one_by_one(
    state: AccountState, commands: Sequence[Command]
) -> tuple[list[tuple[Event, ...]], AccountState]:
    results = []
    for n, command in enumerate(commands):
        events, state = decide_and_evolve(state, command, RECORDED_AT + timedelta(seconds=n))
        results.append(events)
    return results, state


def folded(
    state: AccountState, commands: Sequence[Command]
) -> tuple[list[tuple[Event, ...]], AccountState]:
    at: list[datetime] = [RECORDED_AT + timedelta(seconds=n) for n in range(len(commands))]
    return decide_run(state, list(zip(commands, at, strict=True)))


@BOUNDED
@given(histories())
def test_run_equals_one_by_one_over_the_property_histories(commands: list[Command]) -> None:
    assert folded(AccountState(ACCOUNT), commands) == one_by_one(AccountState(ACCOUNT), commands)


@BOUNDED
@given(MIXED, st.integers(0, 60))
def test_run_equals_one_by_one_from_any_point(commands: list[Command], split: int) -> None:
    """From a state mid-history (lineage and flags included), with a repeated request id too."""
    _, middle = one_by_one(AccountState(ACCOUNT), commands[:split])
    rest = commands[split:]
    repeats = [c for c in commands[:split] if isinstance(c, ConsumeUsage)][:1]
    rest = [*rest, *repeats]  # its id is in the lineage: the general path decides
    assert folded(middle, rest) == one_by_one(middle, rest)


def test_plain_calls_skip_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    general: list[Command] = []

    def counted(
        state: AccountState, command: Command, recorded_at: datetime
    ) -> tuple[tuple[Event, ...], AccountState]:
        general.append(command)
        return decide_and_evolve(state, command, recorded_at)

    monkeypatch.setattr(run, "decide_and_evolve", counted)
    grant = GrantSpec(BucketKind.GIFT, None, 1000, 0, None, None).build(0)
    calls = [UsageSpec("POST /v1/scanner/scan", 200, 1, 5, None).build(n) for n in range(1, 50)]
    results, state = folded(AccountState(ACCOUNT), [grant, *calls])
    assert general == [grant]
    assert (state.balance, state.seq, len(results)) == (951, 50, 50)
    assert state == one_by_one(AccountState(ACCOUNT), [grant, *calls])[1]
