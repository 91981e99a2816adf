"""Running per-partition work side by side, failing as one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def all_or_none(work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the coroutines concurrently and return their results in order. The first failure
    cancels the rest (each runs in its own transaction, so a cancelled one rolls back) and is
    raised as it is, not wrapped: the caller's error handling sees the error it would see from
    running them one after another."""
    tasks = [asyncio.ensure_future(w) for w in work]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = next((t for t in tasks if t in done and t.exception() is not None), None)
    if failed is None:
        return [t.result() for t in tasks]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    raise failed.exception()  # type: ignore[misc]
