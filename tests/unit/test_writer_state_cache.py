"""The writer's state cache: a hit only at the version it was put with; bounded; no lineage."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from services.core.model import AccountState, Consumption
from services.writer.state_cache import StateCache
from tests.unit.test_writer_snapshot_text import STATES


def _state(account: str, seq: int = 1) -> AccountState:
    return AccountState(account_id=account, seq=seq, balance=10 * seq)


def test_a_hit_needs_the_version_the_commit_wrote() -> None:
    cache = StateCache(10)
    cache.put_all([_state("a")], "701")
    assert cache.get("a", "701") == _state("a")
    assert cache.get("a", "702") is None  # someone else wrote the row since
    assert cache.get("b", "701") is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_batch_lineage_is_not_cached() -> None:
    cache = StateCache(10)
    lineage = {"req_1": Consumption(request_id="req_1", draws=())}
    cache.put_all([AccountState(account_id="a", seq=2, consumptions=lineage)], "9")
    cached = cache.get("a", "9")
    assert cached is not None and dict(cached.consumptions) == {}


def test_the_oldest_entries_go_past_the_bound() -> None:
    cache = StateCache(3)
    for n in range(5):
        cache.put_all([_state(f"acct_{n}")], str(n))
    cache.put_all([_state("acct_2", seq=2)], "9")  # refreshed: now the youngest
    cache.put_all([_state("acct_5")], "10")
    assert len(cache) == 3
    assert cache.version_of("acct_3") is None
    assert [cache.version_of(a) for a in ("acct_4", "acct_2", "acct_5")] == ["4", "9", "10"]


@given(STATES, st.dictionaries(st.text(max_size=4), st.builds(Consumption, st.text(), st.just(()))))
def test_the_cached_state_is_the_state_without_its_lineage(
    state: AccountState, lineage: dict[str, Consumption]
) -> None:
    cache = StateCache(10)
    with_lineage = replace(state, consumptions=lineage)
    cache.put_all([with_lineage], "7")
    assert cache.get(state.account_id, "7") == replace(state, consumptions={})
