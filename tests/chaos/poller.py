"""I6 and I7 from outside: a dashboard polling the API all through the round.

I6: every balance the API answered is the account's ledger at the `ledgerSeq` it names (its
    `balance_after`, its reserved sum): no partial batch is ever visible, and a balance moves only
    with an entry that explains it; `ledgerSeq` never goes backwards for a client.
I7: every answer to an account's key is about that account only (balance and ledger page), and
    its key opens no admin route.
Unavailability (a 503 while Postgres restarts) is counted, not an invariant breach; a 200 that
lies is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
import httpx

from tests.chaos.invariants import Verdict

POLL_INTERVAL_S = 0.05
REQUEST_TIMEOUT_S = 10.0
LEDGER_PAGE_EVERY = 5  # polls


@dataclass(frozen=True)
class Observation:
    account_id: str
    ledger_seq: int
    balance: int
    reserved: int
    available: int


@dataclass
class PollLog:
    observations: list[Observation] = field(default_factory=list)
    requests: int = 0
    unavailable: int = 0  # 5xx or no answer: counted, not judged
    leaks: list[str] = field(default_factory=list)  # I7 breaches, as found


class Poller:
    def __init__(self, base_url: str, keys: dict[str, str]) -> None:
        self.base_url, self.keys = base_url, keys  # account id -> its customer key
        self.log = PollLog()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> PollLog:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.log

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            polls = 0
            while not self._stop.is_set():
                polls += 1
                for account_id, key in self.keys.items():
                    await self._poll_balance(http, account_id, key)
                    if polls % LEDGER_PAGE_EVERY == 0:
                        await self._poll_ledger(http, account_id, key)
                        await self._try_admin(http, account_id, key)
                await asyncio.sleep(POLL_INTERVAL_S)

    async def _get(self, http: httpx.AsyncClient, path: str, key: str) -> httpx.Response | None:
        self.log.requests += 1
        try:
            response = await http.get(path, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError:
            self.log.unavailable += 1
            return None
        if response.status_code >= 500:
            self.log.unavailable += 1
            return None
        return response

    async def _poll_balance(self, http: httpx.AsyncClient, account_id: str, key: str) -> None:
        response = await self._get(http, "/v1/credits/balance", key)
        if response is None or response.status_code != 200:
            return
        body = response.json()
        if body["accountId"] != account_id:
            self.log.leaks.append(f"{account_id}'s key read {body['accountId']}'s balance")
        self.log.observations.append(
            Observation(
                account_id, body["ledgerSeq"], body["balance"], body["reserved"], body["available"]
            )
        )

    async def _poll_ledger(self, http: httpx.AsyncClient, account_id: str, key: str) -> None:
        response = await self._get(http, "/v1/credits/ledger?limit=50", key)
        if response is None or response.status_code != 200:
            return
        foreign = {e["account_id"] for e in response.json()["data"]} - {account_id}
        if foreign:
            self.log.leaks.append(f"{account_id}'s key read entries of {sorted(foreign)}")

    async def _try_admin(self, http: httpx.AsyncClient, account_id: str, key: str) -> None:
        others = sorted(set(self.keys) - {account_id}) or [account_id]
        response = await self._get(http, f"/v1/admin/accounts/{others[0]}/keys", key)
        if response is not None and response.status_code not in (401, 403):
            self.log.leaks.append(f"{account_id}'s key opened admin: {response.status_code}")


PREFIX_AT_SEQ = """
SELECT o.account_id, o.seq, e.balance_after,
       (SELECT coalesce(sum(reserved_delta), 0)::bigint FROM ledger_entries r
        WHERE r.account_id = o.account_id AND r.seq <= o.seq) AS reserved
FROM unnest($1::text[], $2::bigint[]) AS o(account_id, seq)
LEFT JOIN ledger_entries e ON e.account_id = o.account_id AND e.seq = o.seq
"""


async def judge(pool: asyncpg.Pool, log: PollLog) -> list[Verdict]:
    distinct = sorted({(o.account_id, o.ledger_seq) for o in log.observations})
    rows = await pool.fetch(PREFIX_AT_SEQ, [a for a, _ in distinct], [s for _, s in distinct])
    truth = {(r["account_id"], r["seq"]): (r["balance_after"] or 0, r["reserved"]) for r in rows}
    lies = [
        o
        for o in log.observations
        if truth[(o.account_id, o.ledger_seq)] != (o.balance, o.reserved)
    ]
    lies += [o for o in log.observations if o.available != o.balance - o.reserved]
    backwards = _backwards(log.observations)
    detail = f"{len(log.observations)} balances read, {log.unavailable} unavailable"
    if lies:
        detail += f"; answers unlike the ledger at their seq: {lies[:3]}"
    if backwards:
        detail += f"; ledgerSeq went back: {backwards[:3]}"
    return [
        Verdict("I6", bool(log.observations) and not lies and not backwards, detail),
        Verdict("I7", not log.leaks, "; ".join(log.leaks[:3])),
    ]


def _backwards(observations: list[Observation]) -> list[tuple[str, int, int]]:
    last: dict[str, int] = {}
    found = []
    for o in observations:
        if o.ledger_seq < last.get(o.account_id, 0):
            found.append((o.account_id, last[o.account_id], o.ledger_seq))
        last[o.account_id] = max(last.get(o.account_id, 0), o.ledger_seq)
    return found


async def wait_for_api(base_url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API at {base_url} did not answer in {deadline_s} s")
            await asyncio.sleep(0.1)
