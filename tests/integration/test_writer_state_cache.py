"""The writer's state cache never hides a change made to an account row behind its back.

The writer keeps the states it committed (services/writer/state_cache.py) and skips decoding a
row still at the version its commit wrote. A row someone else changed (here an operator's
UPDATE; in production another writer instance after a rebalance) must be read again: the
low-balance threshold written into the snapshot directly must raise its alert on the next call.
"""

from __future__ import annotations

import json

import pytest

from tests.messages import grant, usage
from tests.pipeline import Driver, read_topic

pytestmark = pytest.mark.integration


async def test_a_row_changed_behind_the_writer_is_read_again(driver: Driver) -> None:
    await driver.commands(grant("c", 100, "g1"))
    await driver.settled()
    await driver.usage(usage("c", "r1", credits=1))  # the writer now holds c's state cached
    await driver.settled()
    changed = await driver.pool.execute(
        """UPDATE writer_accounts
           SET snapshot = jsonb_set(snapshot, '{settings,low_balance_threshold}', '95')
           WHERE account_id = 'c'"""
    )
    assert changed == "UPDATE 1"
    await driver.usage(usage("c", "r2", credits=10))  # 99 → 89: crosses 95 under the new rule
    await driver.settled()
    alerts = [json.loads(r.value) for r in await read_topic(
        driver.settings, driver.settings.alerts_topic, 1)]  # fmt: skip
    assert [(a["type"], a["account_id"]) for a in alerts] == [("low_balance", "c")]
    assert (await driver.view("c"))["balance"] == 89
