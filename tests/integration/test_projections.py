"""Read models on real Kafka and Postgres: each equals a fresh fold of the ledger."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from projections.audit import audit
from projections.lag import projection_lag
from projections.rebuild import rebuild
from services.platform.settings import Settings
from services.runtime import running
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver, publish, wait_for_consumed, wait_until

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 21)
SCAN = "POST /v1/scanner/scan"
REPORT = "GET /v1/reports/export"


async def mixed_load(driver: Driver) -> None:
    await driver.commands(
        grant("m1", 100, "sub", bucket="subscription", expires_at=at(600)),
        grant("m1", 50, "gift", bucket="gift", expires_at=at(60)),
        grant("m1", 500, "paid", bucket="purchased"),
        command("account_settings", "m1", "s1", low_balance_threshold=400),
        grant("m2", 20, "paid2"),
    )
    await driver.settled()
    calls = [usage("m1", f"r{n}", credits=30, occurred_at=at(n)) for n in range(6)]
    calls += [usage("m1", "fail", 500, credits=9), usage("m1", "free", credits=0, latency_ms=5)]
    calls += [usage("m2", "x1", credits=15, endpoint="GET /v1/reports/export", latency_ms=40)]
    await driver.usage(*calls, *calls[:2])  # with duplicates
    await driver.settled()
    await driver.commands(
        command("refund", "m1", "rf1", request_id="r2", reason="bad scan"),
        command("refund", "m1", "rf2", request_id="r3", amount=10, reason="partial"),
        command("hold", "m1", "h1", hold_id="job", amount=40, expires_at=at(120)),
        command("capture", "m1", "c1", hold_id="job", amount=25, request_id="job-1",
                endpoint=SCAN),
        command("void_grant", "m2", "v1", grant_id="paid2"),
    )  # fmt: skip
    await driver.usage(usage("m1", "late", credits=5, occurred_at=at(90)))  # gift expired at 60
    await driver.settled()
    # m2, now empty: a grant scheduled for minute 120, a call at 100 that nothing covers (owed),
    # one at 130 (the grant is active by then, and paid what was owed unless the scheduler
    # activated it before the call at 100 was written).
    await driver.commands(grant("m2", 40, "m2-next", bucket="purchased", effective_at=at(120)))
    await driver.settled()
    await driver.usage(usage("m2", "x2", credits=6, occurred_at=at(100), endpoint=REPORT))
    await driver.settled()
    await driver.usage(usage("m2", "x3", credits=4, occurred_at=at(130), endpoint=REPORT))
    await driver.settled()


async def test_every_read_model_equals_a_fresh_fold_of_the_ledger(driver: Driver) -> None:
    await mixed_load(driver)
    report = await audit(driver.pool)
    assert report.drifts == []
    assert (report.accounts, report.entries) == (2, await driver.pool.fetchval(
        "SELECT count(*) FROM ledger_entries"
    ))  # fmt: skip


async def test_activity_counts_calls_net_of_refunds(driver: Driver) -> None:
    await mixed_load(driver)
    row = await driver.pool.fetchrow(
        "SELECT * FROM activity_days WHERE account_id = 'm1' AND day = $1", DAY
    )
    assert row is not None
    # 6 calls of 30, one fully refunded, one refunded 10; the 500 nets to zero; a capture of 25
    # and a late call of 5; the free call is no billable activity.
    assert (row["scans"], row["credits"], row["refunds"]) == (
        6 - 1 + 1 + 1, 6 * 30 - 30 - 10 + 25 + 5, 30 + 10 + 9,
    )  # fmt: skip


async def test_endpoint_usage_counts_all_traffic_and_net_credits(driver: Driver) -> None:
    await mixed_load(driver)
    rows = {
        r["endpoint"]: r
        for r in await driver.pool.fetch(
            "SELECT * FROM endpoint_usage WHERE account_id = 'm1' AND day = $1", DAY
        )
    }
    scan = rows[SCAN]
    # 6 + fail + free + late + the capture = 10 requests (duplicates not counted): a capture
    # that charged is a call, as in activity
    assert (scan["requests"], scan["successful"], scan["failed"]) == (10, 9, 1)
    assert scan["credits"] == 6 * 30 - 30 - 10 + 25 + 5
    assert (scan["latency_samples"], scan["latency_ms_max"]) == (1, 5)


async def test_grants_track_remaining_and_state(driver: Driver) -> None:
    await mixed_load(driver)
    rows = {
        (r["account_id"], r["grant_id"]): r
        for r in await driver.pool.fetch("SELECT * FROM grants_view")
    }
    assert rows[("m1", "gift")]["state"] == "expired"
    assert rows[("m2", "paid2")]["state"] == "voided"
    assert rows[("m2", "paid2")]["remaining"] == 0
    scheduled = rows[("m2", "m2-next")]
    assert (scheduled["state"], scheduled["amount"]) == ("active", 40)  # activated at minute 120
    entries = await driver.entries("m2")
    shapes = [(e["reason"], e["bucket_grant_id"], e["delta"], e["metadata"]) for e in entries]
    assert ("grant", "m2-next", 0) in [s[:3] for s in shapes]  # opened scheduled
    assert any(s[0] == "grant" and "activated" in s[3] for s in shapes)
    assert any(s[0] == "consume" and "owed" in s[3] for s in shapes)  # x2: nothing covered it
    assert rows[("m1", "sub")]["priority"] == 10
    total_left = sum(r["remaining"] for r in rows.values() if r["account_id"] == "m1")
    balance = await driver.pool.fetchval("SELECT balance FROM balance_view WHERE account_id='m1'")
    assert total_left == balance  # m1 has no unbucketed credits


async def test_the_audit_reports_a_model_that_drifted(driver: Driver) -> None:
    await mixed_load(driver)
    await driver.pool.execute(
        "UPDATE activity_days SET credits = credits + 1 WHERE account_id = 'm1'"
    )
    report = await audit(driver.pool)
    assert [(d.account_id, d.model) for d in report.drifts] == [("m1", "activity")]


async def test_a_rebuild_during_live_ingest_ends_equal_with_no_gap_in_service(
    driver: Driver,
) -> None:
    await mixed_load(driver)
    accounts_before = await driver.pool.fetchval("SELECT count(*) FROM balance_view")
    stop_reading = asyncio.Event()
    seen_counts: list[int] = []

    async def reader() -> None:  # a dashboard polling while the rebuild runs
        while not stop_reading.is_set():
            seen_counts.append(int(await driver.pool.fetchval("SELECT count(*) FROM balance_view")))
            await asyncio.sleep(0.005)

    reading = asyncio.create_task(reader())
    live = [usage("m1", f"live{n}", credits=1, occurred_at=at(200 + n)) for n in range(150)]
    await driver.usage(*live[:75])
    stopped = await rebuild(
        driver.pool, driver.settings.projector_group, chunk_accounts=1, stop_after_chunks=1
    )
    assert stopped is None  # folded one account, then "died": it resumes from there
    await driver.usage(*live[75:100])
    report = await rebuild(driver.pool, driver.settings.projector_group, chunk_accounts=1)
    await driver.usage(*live[100:])
    await driver.settled()
    stop_reading.set()
    await reading
    assert report is not None
    assert (report.resumed_from, report.accounts) == ("m1", 1)
    assert min(seen_counts) == accounts_before
    assert (await audit(driver.pool)).drifts == []
    scan_credits = await driver.pool.fetchval(
        "SELECT credits FROM endpoint_usage WHERE account_id = 'm1' AND endpoint = $1 AND day = $2",
        SCAN, DAY,
    )  # fmt: skip
    assert scan_credits == 6 * 30 - 30 - 10 + 25 + 5 + 150
    # The swapped-in tables keep the customer reads' wall: the API role reads its account only.
    async with driver.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('creditledger.account_id', 'm2', true), "
            "set_config('role', 'creditledger_api', true)"
        )
        for table in ("balance_view", "activity_days", "grants_view"):
            seen = await conn.fetch(f"SELECT DISTINCT account_id FROM {table}")  # noqa: S608
            assert [r["account_id"] for r in seen] == ["m2"], table


async def test_entries_the_writer_commits_during_a_rebuild_keep_their_usage_credits(
    driver: Driver,
) -> None:
    """The writer owns `endpoint_usage.credits` and no projector replays them: entries committed
    after the rebuild's shadow read their account (a call, a refund of an older call, a new
    account) are added at the swap, with the writer's rule."""
    await driver.commands(grant("w1", 100, "g1"), grant("w2", 100, "g2"))
    await driver.usage(
        usage("w1", "a0", credits=7, occurred_at=at(0)),
        usage("w2", "b0", credits=3, occurred_at=at(0), endpoint=REPORT),
    )
    await driver.settled()
    chunks = 2  # ("", w1] and (w1, ...): every chunk computed, not swapped
    stopped = await rebuild(
        driver.pool, driver.settings.projector_group, chunk_accounts=1, stop_after_chunks=chunks
    )
    assert stopped is None
    await driver.commands(
        command(
            "refund",
            "w1",
            "rf",
            request_id="a0",
            amount=2,
            reason="partial",
            occurred_at=at(1440 + 5),
        ),  # the next day
        grant("w3", 50, "g3"),
    )
    await driver.usage(
        usage("w1", "a1", credits=5, occurred_at=at(1440 + 1)),
        usage("w3", "c0", credits=4, occurred_at=at(2)),
    )
    await wait_for_consumed(driver.pool, driver.settings, driver.published, driver.components)
    report = await rebuild(driver.pool, driver.settings.projector_group, chunk_accounts=1)
    assert report is not None
    # One call per account after the swap: a partition's projector notices the rewind when its
    # next record arrives (as in the test above).
    await driver.usage(
        usage("w1", "a2", credits=1, occurred_at=at(1440 + 2)),
        usage("w2", "b1", credits=1, occurred_at=at(3), endpoint=REPORT),
        usage("w3", "c1", credits=1, occurred_at=at(3)),
    )
    await driver.settled()
    assert (await audit(driver.pool)).drifts == []
    rows = await driver.pool.fetch(
        "SELECT account_id, endpoint, day, credits FROM endpoint_usage ORDER BY 1, 2, 3"
    )
    next_day = date.fromordinal(DAY.toordinal() + 1)
    assert [tuple(r) for r in rows] == [
        ("w1", SCAN, DAY, 7 - 2),  # the refund taken back from the call's own day
        ("w1", SCAN, next_day, 5 + 1),
        ("w2", REPORT, DAY, 3 + 1),
        ("w3", SCAN, DAY, 4 + 1),  # an account the shadow has no row for
    ]


async def test_projection_lag_is_reported_and_clears_once_caught_up(namespace: Settings) -> None:
    async with running(namespace, ("writer",)) as writer_only:
        await publish(writer_only.producer, namespace.commands_topic, [grant("l1", 10, "g")])
        await publish(writer_only.producer, namespace.usage_topic, [usage("l1", "r1", credits=2)])
        await wait_for_consumed(writer_only.pool, namespace, 2, writer_only.tasks)
        behind = {lag.projection: lag for lag in await projection_lag(writer_only.pool)}
    assert {name: lag.entries_behind for name, lag in behind.items()} == dict.fromkeys(
        ("balance", "activity", "grants"), 2
    )
    assert behind["balance"].oldest_unapplied_ms > 0
    async with running(namespace, ("projector",)) as projector:
        driver = Driver(namespace, projector.pool, projector.producer, projector.tasks)
        driver.published = 2
        await driver.settled()

        async def all_caught_up() -> bool:
            return all(lag.entries_behind == 0 for lag in await projection_lag(projector.pool))

        await wait_until(all_caught_up, "every projection to catch up", components=projector.tasks)
