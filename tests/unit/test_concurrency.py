"""all_or_none: results in order; the first failure cancels the rest and is raised unwrapped."""

from __future__ import annotations

import asyncio

import pytest

from services.platform.concurrency import all_or_none


async def test_results_come_back_in_the_order_given() -> None:
    async def later(value: int, delay_s: float) -> int:
        await asyncio.sleep(delay_s)
        return value

    assert await all_or_none([later(1, 0.02), later(2, 0.0), later(3, 0.01)]) == [1, 2, 3]
    assert await all_or_none([]) == []


async def test_the_first_failure_cancels_the_rest_and_is_raised_as_it_is() -> None:
    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise ConnectionResetError("dropped")

    with pytest.raises(ConnectionResetError, match="dropped"):
        await all_or_none([slow(), failing()])
    assert cancelled.is_set()
