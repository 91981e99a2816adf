"""The bench's catch-up wait follows the projector by its stored offsets against the ledger
topic's end, and confirms with the lag: it ends once the pipeline applied everything, and not
while the projector trails (services/bench/workload.py)."""

from __future__ import annotations

import pytest

from projections.lag import projection_lag
from services.bench.workload import ledger_end_offsets, projected_offsets, wait_caught_up
from services.platform.settings import Settings
from services.runtime import running
from tests.messages import grant, usage
from tests.pipeline import publish, wait_for_consumed


async def test_the_wait_ends_when_every_entry_is_projected_and_not_before(
    namespace: Settings,
) -> None:
    async with running(namespace, ("writer",)) as writer_only:
        await publish(writer_only.producer, namespace.commands_topic, [grant("w1", 100, "g")])
        await publish(writer_only.producer, namespace.usage_topic,
                      [usage("w1", f"r{n}", credits=3) for n in range(5)])  # fmt: skip
        await wait_for_consumed(writer_only.pool, namespace, 6, writer_only.tasks)
        # The writer is done, the projector not running: the wait runs out.
        with pytest.raises(TimeoutError, match="not caught up"):
            await wait_caught_up(writer_only.pool, namespace, 6, deadline_s=2.0)
        assert await projected_offsets(writer_only.pool, namespace) == 0
    async with running(namespace, ("projector",)) as projector:
        await wait_caught_up(projector.pool, namespace, 6, deadline_s=120.0,
                             check_alive=lambda: None)  # fmt: skip
        assert all(lag.accounts_behind == 0 for lag in await projection_lag(projector.pool))
        end = await ledger_end_offsets(namespace)
        assert end >= 6 and await projected_offsets(projector.pool, namespace) == end
        balance = await projector.pool.fetchval(
            "SELECT balance FROM balance_view WHERE account_id = 'w1'"
        )
        assert balance == 100 - 5 * 3
