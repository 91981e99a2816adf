"""Claiming and saving stored offsets (services/platform/offsets.py) on real Postgres: one
statement each once a partition's rows exist, the rows created on a first claim, a claim that
waits for another batch of the same partitions and then sees its saved offsets, and a claim of
rows stored for another topic incarnation stale."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.platform import offsets
from services.platform.settings import Settings

pytestmark = pytest.mark.integration
CONSUMER = "claimer"
USAGE, COMMANDS = "usage-in", "commands-in"
WAIT_DEADLINE_S = 10.0


@pytest.fixture
async def pool(namespace: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert namespace.database_url is not None
    created = await asyncpg.create_pool(namespace.database_url, min_size=1, max_size=3)
    yield created
    await created.close()


def stored(pool: asyncpg.Pool, reading: dict[tuple[str, int], uuid.UUID]) -> offsets.StoredOffsets:
    so = offsets.StoredOffsets(pool, CONSUMER)
    so.reading = dict(reading)
    return so


async def rows(pool: asyncpg.Pool) -> dict[tuple[str, int], tuple[int, uuid.UUID | None]]:
    found = await pool.fetch("SELECT * FROM kafka_offsets WHERE consumer = $1", CONSUMER)
    return {(r["topic"], r["kafka_partition"]): (r["next_offset"], r["topic_id"]) for r in found}


class Statements:
    """What a connection sends (asyncpg calls query loggers soon after, not during, a query)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, record: asyncpg.connection.LoggedQuery) -> None:
        self.sent.append(record.query.strip().rstrip(";"))

    async def of_transaction(self) -> list[str]:
        """The statements between BEGIN and COMMIT, once the COMMIT is logged."""
        deadline = time.monotonic() + WAIT_DEADLINE_S
        while "COMMIT" not in self.sent:
            assert time.monotonic() < deadline, f"no COMMIT logged: {self.sent}"
            await asyncio.sleep(0.01)
        return self.sent[self.sent.index("BEGIN") + 1 : self.sent.index("COMMIT")]


async def test_first_claim_creates_the_rows_then_one_statement_each(pool: asyncpg.Pool) -> None:
    ids = {(USAGE, 2): uuid.uuid4(), (COMMANDS, 2): uuid.uuid4()}
    so = stored(pool, ids)
    keys = sorted(ids)
    async with pool.acquire() as conn, conn.transaction():
        assert await so.claim(conn, keys) == dict.fromkeys(keys, 0)
        await so.save(conn, {(USAGE, 2): 5, (COMMANDS, 2): 9})
    assert await rows(pool) == {
        (USAGE, 2): (5, ids[(USAGE, 2)]),
        (COMMANDS, 2): (9, ids[(COMMANDS, 2)]),
    }

    statements = Statements()
    async with pool.acquire() as conn:
        conn.add_query_logger(statements)
        async with conn.transaction():
            assert await so.claim(conn, keys) == {(USAGE, 2): 5, (COMMANDS, 2): 9}
            await so.save(conn, {(USAGE, 2): 6})
        # The rows exist: the claim is the lock alone, no INSERT attempted; the save is one.
        assert await statements.of_transaction() == [
            offsets.LOCK_OFFSETS.strip(),
            offsets.SAVE_OFFSETS.strip(),
        ]
        conn.remove_query_logger(statements)
    assert (await rows(pool))[(USAGE, 2)] == (6, ids[(USAGE, 2)])


async def test_a_claim_with_some_rows_missing_creates_only_those(pool: asyncpg.Pool) -> None:
    ids = {(USAGE, 0): uuid.uuid4(), (COMMANDS, 0): uuid.uuid4()}
    so = stored(pool, ids)
    async with pool.acquire() as conn, conn.transaction():
        await so.claim(conn, [(USAGE, 0)])
        await so.save(conn, {(USAGE, 0): 4})
    async with pool.acquire() as conn, conn.transaction():
        claimed = await so.claim(conn, [(USAGE, 0), (COMMANDS, 0)])
    assert claimed == {(USAGE, 0): 4, (COMMANDS, 0): 0}
    assert await rows(pool) == {
        (USAGE, 0): (4, ids[(USAGE, 0)]),
        (COMMANDS, 0): (0, ids[(COMMANDS, 0)]),
    }


async def test_a_claim_waits_for_the_batch_holding_the_rows_and_sees_its_save(
    pool: asyncpg.Pool,
) -> None:
    ids = {(USAGE, 1): uuid.uuid4()}
    so = stored(pool, ids)
    async with pool.acquire() as conn, conn.transaction():
        await so.claim(conn, ids)
        await so.save(conn, {(USAGE, 1): 3})
    async with pool.acquire() as first:
        transaction = first.transaction()
        await transaction.start()
        assert await so.claim(first, ids) == {(USAGE, 1): 3}
        async with pool.acquire() as second:
            pid = await second.fetchval("SELECT pg_backend_pid()")

            async def claim_again() -> dict[tuple[str, int], int]:
                async with second.transaction():
                    return await so.claim(second, ids)

            waiting = asyncio.create_task(claim_again())
            await wait_until_lock_waiting(pool, pid)
            assert not waiting.done()
            await so.save(first, {(USAGE, 1): 8})
            await transaction.commit()
            assert await asyncio.wait_for(waiting, WAIT_DEADLINE_S) == {(USAGE, 1): 8}


async def wait_until_lock_waiting(pool: asyncpg.Pool, pid: int) -> None:
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while time.monotonic() < deadline:
        event = await pool.fetchval(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
        )
        if event == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for the row lock")


async def test_rows_of_another_incarnation_make_the_claim_stale(pool: asyncpg.Pool) -> None:
    old, new = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await stored(pool, {(USAGE, 4): old}).claim(conn, [(USAGE, 4)])
        await offsets.save_offsets(conn, CONSUMER, {(USAGE, 4): 7}, {(USAGE, 4): old})
    so = stored(pool, {(USAGE, 4): new, (COMMANDS, 4): new})
    async with pool.acquire() as conn, conn.transaction():
        claimed = await so.claim(conn, [(USAGE, 4), (COMMANDS, 4)])
        direct = await offsets.claim_offsets(conn, CONSUMER, [(USAGE, 4)], {(USAGE, 4): new})
    assert claimed == {(USAGE, 4): offsets.STALE, (COMMANDS, 4): offsets.STALE}
    assert direct == {(USAGE, 4): offsets.STALE}
    assert {(tp.topic, tp.partition) for tp in so.stale} == {(USAGE, 4)}
    assert (await rows(pool))[(USAGE, 4)] == (7, old)  # untouched: the batch applied nothing
