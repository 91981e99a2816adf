"""Start-up waits for Postgres and Kafka: bounded, exponential backoff, each wait logged, only
for errors that say "not ready yet". A fake clock: no test sleeps."""

from __future__ import annotations

import logging
import socket

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from services.platform.postgres import migrate
from services.platform.settings import Settings
from services.platform.startup import (
    KAFKA_NOT_READY,
    POSTGRES_NOT_READY,
    wait_until_ready,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Flaky:
    """Fails with `errors` in turn, then answers "ready"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ready"


async def wait(flaky: Flaky, time: FakeTime, total_s: float = 60.0) -> str:
    return await wait_until_ready(
        flaky, "Postgres (test)", POSTGRES_NOT_READY, total_s, clock=time.clock, sleep=time.sleep
    )


async def test_not_ready_errors_are_retried_with_doubling_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    flaky = Flaky(
        asyncpg.CannotConnectNowError("the database system is starting up"),
        ConnectionRefusedError(111, "Connect call failed"),
        OSError("reset"),
        asyncpg.CannotConnectNowError("the database system is in recovery mode"),
        TimeoutError(),
        ConnectionResetError(),
        ConnectionRefusedError(),
    )
    with caplog.at_level(logging.WARNING, "creditledger.startup"):
        assert await wait(flaky, time) == "ready"
    assert flaky.tries == 8
    assert time.waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 7
    assert logged[0].startswith("Postgres (test) not ready (CannotConnectNowError: the database")
    assert "try 2 again in 0.25 s" in logged[0]


async def test_the_wait_is_bounded_and_the_last_error_is_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    flaky = Flaky(*(ConnectionRefusedError(f"refused {n}") for n in range(100)))
    with (
        caplog.at_level(logging.WARNING, "creditledger.startup"),
        pytest.raises(ConnectionRefusedError, match="refused"),
    ):
        await wait(flaky, time, total_s=10.0)
    assert sum(time.waits) <= 10.0
    assert time.waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # 9.75 s: one more would pass 10
    assert "giving up" in caplog.records[-1].getMessage()


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InvalidPasswordError("password authentication failed"),
        asyncpg.InvalidCatalogNameError('database "nope" does not exist'),
        RuntimeError("migration 0001 changed after it was applied"),
        ValueError("a bug"),
    ],
)
async def test_other_errors_fail_at_once(error: Exception) -> None:
    time = FakeTime()
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        await wait(flaky, time)
    assert (flaky.tries, time.waits) == (1, [])


async def test_no_bound_means_one_try() -> None:
    time = FakeTime()
    flaky = Flaky(ConnectionRefusedError())
    with pytest.raises(ConnectionRefusedError):
        await wait(flaky, time, total_s=0)
    assert time.waits == []


async def test_kafka_connection_errors_are_not_ready_errors() -> None:
    time = FakeTime()
    flaky = Flaky(KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9)]"))
    result = await wait_until_ready(
        flaky, "Kafka (test)", KAFKA_NOT_READY, 5, clock=time.clock, sleep=time.sleep
    )
    assert (result, time.waits) == ("ready", [0.25])


async def test_migrate_against_a_port_nobody_listens_on_is_retried_then_fails() -> None:
    """The real asyncpg error of a server not listening (yet) is one start-up waits for."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again at once: connecting is refused
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    time = FakeTime()
    tries = 0

    async def attempt() -> list[str]:
        nonlocal tries
        tries += 1
        return await migrate(url)

    with pytest.raises(ConnectionRefusedError):
        await wait_until_ready(
            attempt, "Postgres", POSTGRES_NOT_READY, 3, clock=time.clock, sleep=time.sleep
        )
    assert tries == 4  # waits of 0.25, 0.5 and 1 s; a fourth, of 2 s, would pass 3 s


def test_the_bound_is_a_setting() -> None:
    assert Settings().startup_wait_s == 60.0
    assert Settings(startup_wait_s=5).startup_wait_s == 5.0
