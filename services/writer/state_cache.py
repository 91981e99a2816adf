"""Account states as this writer last committed them, so a batch need not decode every locked
account's JSON snapshot again.

An entry is keyed by the row version its commit wrote (`writer_accounts.xmin`, the id of the
transaction that last updated the row). The lock query returns each row's version and sends the
snapshot only when it differs from the cached one, so a row anyone else changed since (another
writer instance after a rebalance, an operator, a restore) is read from its snapshot: a hit
means the row is byte for byte what this writer wrote. Entries are put only after a commit, so
a rolled-back batch leaves none behind. Bounded: past `max_accounts` the oldest entries go.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from services.core.model import AccountState


class StateCache:
    def __init__(self, max_accounts: int) -> None:
        assert max_accounts >= 1
        self.max_accounts = max_accounts
        self._states: dict[str, tuple[str, AccountState]] = {}
        self.hits = 0
        self.misses = 0

    def version_of(self, account_id: str) -> str | None:
        cached = self._states.get(account_id)
        return None if cached is None else cached[0]

    def get(self, account_id: str, version: str) -> AccountState | None:
        cached = self._states.get(account_id)
        if cached is None or cached[0] != version:
            self.misses += 1
            return None
        self.hits += 1
        return cached[1]

    def put_all(self, states: Iterable[AccountState], version: str) -> None:
        for state in states:
            # Lineage is per batch (loaded from the ledger), never part of the cached state.
            bare = _without_lineage(state) if state.consumptions else state
            self._states.pop(state.account_id, None)  # re-insert: dict order is the age order
            self._states[state.account_id] = (version, bare)
        excess = len(self._states) - self.max_accounts
        if excess > 0:
            for account_id in list(islice(self._states, excess)):
                del self._states[account_id]

    def __len__(self) -> int:
        return len(self._states)


def _without_lineage(s: AccountState) -> AccountState:
    """`replace(s, consumptions={})`, built positionally (once per account and batch; the
    field order is checked in services/core/run.py, equality in test_writer_state_cache.py)."""
    return AccountState(
        s.account_id, s.seq, s.balance, s.buckets, s.holds, s.settings, s.flags, {},
        s.granted_total, s.consumed_total,
    )  # fmt: skip
