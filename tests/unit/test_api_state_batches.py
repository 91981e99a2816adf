"""The reads of one event-loop pass share one statement (services/api/reads/state_batches.py):
each read still gets its own account's state, an account asked twice is read once, a later
pass is a batch of its own, and a failed statement fails each of its reads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.api.reads import state_batches
from services.api.reads.balance import STATES_AS_CUSTOMER, stored_state
from services.api.reads.state_batches import StateBatches

EMPTY = {"buckets": {}, "holds": {}, "settings": {}, "flags": {}, "totals": [0, 0]}


class _Statements:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    async def __call__(self, pool: object, sql: str, accounts: list[str]) -> list[dict[str, Any]]:
        assert sql == STATES_AS_CUSTOMER
        self.batches.append(accounts)
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return [
            {"account": a, "seq": len(a), "balance": 10 * len(a), "snapshot": EMPTY,
             "updated_at": None, "granted_total": None, "consumed_total": None,
             "bucket_remaining": None}
            for a in accounts if a != "nobody"
        ]  # fmt: skip


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> _Statements:
    fake = _Statements()
    monkeypatch.setattr(state_batches, "customer_fetch", fake)
    return fake


async def test_the_reads_of_one_pass_share_one_statement(statements: _Statements) -> None:
    batches = StateBatches(pool=object())  # type: ignore[arg-type]
    read = await asyncio.gather(*(batches.read(a) for a in ("ab", "abc", "ab", "nobody")))
    assert statements.batches == [["ab", "abc", "nobody"]]  # "ab" read once
    assert [(s.state.account_id, s.state.balance) for s in read] == [
        ("ab", 20), ("abc", 30), ("ab", 20), ("nobody", 0),
    ]  # fmt: skip
    assert read[0] is read[2]
    later = await batches.read("abcd")
    assert later.state.balance == 40 and statements.batches[-1] == ["abcd"]


async def test_a_flood_is_split(statements: _Statements, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_batches, "MAX_ACCOUNTS_PER_BATCH", 2)
    batches = StateBatches(pool=object())  # type: ignore[arg-type]
    await asyncio.gather(*(batches.read(a) for a in ("a", "b", "c", "d", "e")))
    assert statements.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_failed_statement_fails_each_read(statements: _Statements) -> None:
    statements.fail = OSError("connection lost")
    batches = StateBatches(pool=object())  # type: ignore[arg-type]
    answers = await asyncio.gather(batches.read("a"), batches.read("b"), return_exceptions=True)
    assert all(isinstance(a, OSError) for a in answers)
    statements.fail = None
    assert (await batches.read("a")).state.balance == 10  # the next pass reads again


async def test_a_cancelled_read_leaves_the_others_theirs(statements: _Statements) -> None:
    batches = StateBatches(pool=object())  # type: ignore[arg-type]
    gone = asyncio.ensure_future(batches.read("ab"))
    kept = asyncio.ensure_future(batches.read("ab"))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await kept).state.balance == 20
    assert gone.cancelled()


async def test_a_state_that_cannot_be_read_fails_its_own_reads_alone(
    statements: _Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that does not decode (say, written by a newer writer) answers its own readers
    with the error, and every other account of the batch with its state: none is left hanging."""
    decode = stored_state

    def broken_for_bad(account_id: str, row: Any) -> Any:
        if account_id == "bad":
            raise KeyError("holds")
        return decode(account_id, row)

    monkeypatch.setattr(state_batches, "stored_state", broken_for_bad)
    batches = StateBatches(pool=object())  # type: ignore[arg-type]
    answers = await asyncio.wait_for(
        asyncio.gather(
            batches.read("ab"), batches.read("bad"), batches.read("abc"), return_exceptions=True
        ),
        timeout=10,
    )
    assert len(statements.batches) == 1
    good_before, bad, good_after = answers
    assert isinstance(bad, KeyError)
    assert not isinstance(good_before, BaseException) and good_before.state.balance == 20
    assert not isinstance(good_after, BaseException) and good_after.state.balance == 30
