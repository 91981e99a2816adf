"""The balance and check reads of one event-loop pass, read by one statement.

Each read of the fast path (services/api/fastreads.py) was a statement of its own: a pool
acquire, a round trip and its two socket calls, most of the API's CPU per read once the
rest was cheap. Reads that start in the same pass of the event loop (under load, those of
every request whose bytes arrived together) join one batch, launched at the end of that pass:
one statement, `pg_temp.creditledger_states`, which for each account in turn sets the account
and reads its row as the reader role under row-level security, exactly as
`creditledger_state` does for one (reads/balance.py). A read alone waits for nothing but the
end of its pass; batches run concurrently, each on a pooled connection of its own, so no read
queues behind another's round trip. An account asked for twice in a batch is read once.

A batch that fails fails each of its reads with the same error, as each statement alone would
have (a 500 from the server-error handler).
"""

from __future__ import annotations

import asyncio
import contextvars

import asyncpg

from services.api.reads.balance import STATES_AS_CUSTOMER, StoredState, customer_fetch, stored_state

MAX_ACCOUNTS_PER_BATCH = 256  # a flood splits into several statements, none unbounded
Waiters = dict[str, list[asyncio.Future[StoredState]]]


class StateBatches:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._forming: Waiters | None = None
        self._running: set[asyncio.Task[None]] = set()  # referenced until done

    async def read(self, account_id: str) -> StoredState:
        """The account as the writer last committed it, read as the customer."""
        loop = asyncio.get_running_loop()
        forming = self._forming
        if forming is None or len(forming) >= MAX_ACCOUNTS_PER_BATCH:
            forming = self._forming = {}
            # A context of its own: the batch is no one request's (its request id, say).
            loop.call_soon(self._launch, forming, context=contextvars.Context())
        answer: asyncio.Future[StoredState] = loop.create_future()
        waiting = forming.get(account_id)
        if waiting is None:
            forming[account_id] = [answer]
        else:
            waiting.append(answer)
        return await answer

    def _launch(self, batch: Waiters) -> None:
        if self._forming is batch:
            self._forming = None
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: Waiters) -> None:
        try:
            rows = await customer_fetch(self.pool, STATES_AS_CUSTOMER, list(batch))
        except BaseException as error:
            _fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return
        found = {row["account"]: row for row in rows}
        for account_id, answers in batch.items():
            # One account's state that cannot be read fails that account's reads alone (a 500
            # each, as its own statement would have), never the other accounts of the batch.
            try:
                stored = stored_state(account_id, found.get(account_id))
            except Exception as error:  # handed to that account's own readers
                _fail({account_id: answers}, error)
                continue
            for answer in answers:
                if not answer.done():  # its request may have been cancelled meanwhile
                    answer.set_result(stored)


def _fail(batch: Waiters, error: BaseException) -> None:
    for answers in batch.values():
        for answer in answers:
            if not answer.done():
                if isinstance(error, asyncio.CancelledError):
                    answer.cancel()
                else:
                    answer.set_exception(error)
