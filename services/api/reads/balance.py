"""Balance and check read the writer's account state and ask the core what it can spend.

`writer_accounts` is the state the writer charges from, current at its commit; the figures and
the check are `services.core.spend` applied to it at the read's instant. So what `/check`
allows, what the balance shows and what the writer charges are one rule over one state, and a
grant that became spendable (or a bucket that expired) since the last entry counts as the
writer will count it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.api.reads.common import iso
from services.core.model import AccountState
from services.core.spend import BalanceFigures
from services.platform.postgres import DbConnection
from services.writer.snapshot import state_from_json

ACCOUNT_STATE = """
SELECT seq, balance, snapshot, updated_at FROM writer_accounts WHERE account_id = $1
"""


@dataclass(frozen=True, slots=True)
class StoredState:
    state: AccountState
    last_updated: datetime | None


async def read_state(conn: DbConnection, account_id: str) -> StoredState:
    """The account as the writer last committed it (an unknown account: empty)."""
    row = await conn.fetchrow(ACCOUNT_STATE, account_id)
    if row is None:
        return StoredState(AccountState(account_id), None)
    state = state_from_json(account_id, row["seq"], row["balance"], row["snapshot"], {})
    return StoredState(state, row["updated_at"] if row["seq"] else None)


def balance_json(
    account_id: str, figures: BalanceFigures, last_updated: datetime | None
) -> dict[str, Any]:
    return {
        "accountId": account_id,
        "balance": figures.balance,
        "reserved": figures.reserved,
        "available": figures.available,
        "scheduled": figures.scheduled,
        "overage": figures.overage,
        "grantedTotal": figures.granted_total,
        "consumedTotal": figures.consumed_total,
        "buckets": [
            {"kind": k.kind, "amount": k.amount, "balance": k.balance} for k in figures.buckets
        ],
        "resetAt": iso(figures.reset_at),
        "lastUpdated": iso(last_updated),
        # How fresh this read is: the ledger seq of the account's last entry it reflects.
        "ledgerSeq": figures.seq,
    }
