"""Accounts for the admin API: every account that exists, with its name and its figures now.

An account exists once the admin API registered it (`accounts`: its name) or the writer applied
anything to it (`writer_accounts`: an account exists from its first event, registered or not),
the same rule a service token's `Creditledger-Account` is checked against (auth.py). The figures
are the balance endpoint's: `services.core.spend.figures` over the writer's state
(`reads/balance.py`), at the read's instant. Read as the owner (admin paths are not under the
customer row-level security), ordered by `account_id` and keyset-paginated on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.api.reads.balance import stored_state
from services.core.spend import BalanceFigures, figures

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# The accounts after $1 ('' for the first page: an account id has at least one character),
# at most $2, by id. Both tables lead their key with account_id, so each side is an index range.
ACCOUNTS_PAGE = """
WITH ids AS (
    SELECT account_id FROM accounts WHERE account_id > $1
    UNION
    SELECT account_id FROM writer_accounts WHERE account_id > $1
    ORDER BY account_id
    LIMIT $2
)
SELECT i.account_id, a.name, a.created_at, a.account_id IS NOT NULL AS registered,
       w.seq, w.balance, w.snapshot, w.updated_at,
       w.granted_total, w.consumed_total, w.bucket_remaining
FROM ids i
LEFT JOIN accounts a ON a.account_id = i.account_id
LEFT JOIN writer_accounts w ON w.account_id = i.account_id
ORDER BY i.account_id
"""
ONE_ACCOUNT = """
SELECT i.account_id, a.name, a.created_at, a.account_id IS NOT NULL AS registered,
       w.seq, w.balance, w.snapshot, w.updated_at,
       w.granted_total, w.consumed_total, w.bucket_remaining
FROM (SELECT $1::text AS account_id) i
LEFT JOIN accounts a ON a.account_id = i.account_id
LEFT JOIN writer_accounts w ON w.account_id = i.account_id
WHERE a.account_id IS NOT NULL OR w.account_id IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class AccountRead:
    account_id: str
    name: str | None  # None: known from its events only, never registered
    registered: bool
    created_at: datetime | None  # when registered
    figures: BalanceFigures
    last_activity_at: datetime | None  # the balance's `lastUpdated`: the writer's last change


def account_read(row: asyncpg.Record, now: datetime) -> AccountRead:
    """One row of `ACCOUNTS_PAGE` / `ONE_ACCOUNT` with the balance endpoint's figures at `now`."""
    account_id: str = row["account_id"]
    stored = stored_state(account_id, row)  # no writer row: an empty account
    return AccountRead(
        account_id, row["name"], row["registered"], row["created_at"],
        figures(stored.state, now), stored.last_updated,
    )  # fmt: skip
