"""The writer's credit semantics, each on real Kafka and Postgres."""

from __future__ import annotations

import json

import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver, read_topic, wait_until

pytestmark = pytest.mark.integration


def draws(entries: list) -> list[tuple[str, str | None, int]]:  # type: ignore[type-arg]
    return [(e["reason"], e["bucket_grant_id"], e["delta"]) for e in entries]


async def test_drawdown_spans_buckets_by_priority_then_expiry_then_age(driver: Driver) -> None:
    await driver.commands(
        grant("a", 10, "purchased-1", bucket="purchased"),
        grant("a", 5, "gift-late", bucket="gift", expires_at=at(600)),
        grant("a", 5, "gift-soon", bucket="gift", expires_at=at(300)),
        grant("a", 4, "sub", bucket="subscription", expires_at=at(900)),
    )
    await driver.settled()
    await driver.usage(usage("a", "r1", credits=12))
    await driver.settled()
    entries = await driver.entries("a")
    assert draws(entries[4:]) == [
        ("consume", "sub", -4),
        ("consume", "gift-soon", -5),
        ("consume", "gift-late", -3),
    ]
    assert {e["source"] for e in entries[4:]} == {"request:r1"}
    view = await driver.view("a")
    assert view["balance"] == 24 - 12
    grants = view["grants"]
    assert {gid: g["balance"] for gid, g in grants.items()} == {
        "purchased-1": 10, "gift-late": 2, "gift-soon": 0, "sub": 0,
    }  # fmt: skip


async def test_refunds_return_to_their_buckets_and_refuse_more_than_consumed(
    driver: Driver,
) -> None:
    await driver.commands(
        grant("b", 3, "sub", bucket="subscription"), grant("b", 10, "paid", bucket="purchased")
    )
    await driver.settled()
    await driver.usage(usage("b", "r1", credits=8))
    await driver.settled()
    await driver.commands(
        command("refund", "b", "c-refund-1", request_id="r1", amount=6, reason="bad result"),
        command("refund", "b", "c-refund-2", request_id="r1", amount=5, reason="again"),
        command("refund", "b", "c-refund-3", request_id="r1", reason="the rest"),
        command("refund", "b", "c-refund-4", request_id="r1", reason="a refund of a refund"),
        command("refund", "b", "c-refund-5", request_id="never-seen", reason="unknown"),
    )
    await driver.settled()
    entries = await driver.entries("b")
    refunds = [e for e in entries if e["reason"] == "refund"]
    # r1 drew 3 from sub then 5 from paid; refunds undo the last draw first.
    assert draws(refunds) == [("refund", "paid", 5), ("refund", "sub", 1), ("refund", "sub", 2)]
    assert {e["source"] for e in refunds} == {"refund:r1"}
    assert (await driver.command_status("b", "c-refund-1"))[0] == "applied"
    status, reason = await driver.command_status("b", "c-refund-2")
    assert status == "rejected"
    assert reason is not None and reason.startswith("refund-exceeds-consumed")
    assert (await driver.command_status("b", "c-refund-3"))[0] == "applied"
    status, reason = await driver.command_status("b", "c-refund-4")
    assert (status, (reason or "").split(":")[0]) == ("rejected", "already-refunded")
    status, reason = await driver.command_status("b", "c-refund-5")
    assert (status, (reason or "").split(":")[0]) == ("rejected", "unknown-request")
    view = await driver.view("b")
    assert (view["balance"], view["consumed_total"]) == (13, 0)


async def test_a_double_charge_attempt_changes_nothing(driver: Driver) -> None:
    await driver.commands(grant("c", 100, "g"))
    await driver.settled()
    call = usage("c", "r1", credits=7)
    await driver.usage(call, call, call)
    await driver.usage(usage("c", "r1", credits=70))  # same id, changed payload
    await driver.settled()
    assert (await driver.view("c"))["balance"] == 93
    dead = await driver.pool.fetch("SELECT error_code FROM dead_letters")
    assert [d["error_code"] for d in dead] == ["request-id-reused"]


async def test_holds_reserve_capture_and_release(driver: Driver) -> None:
    await driver.commands(grant("d", 100, "g"))
    await driver.settled()
    await driver.commands(
        command("hold", "d", "h1", hold_id="hold-1", amount=60, expires_at=at(60)),
        command("hold", "d", "h2", hold_id="hold-2", amount=50, expires_at=at(60)),
    )
    await driver.settled()
    view = await driver.view("d")
    assert (view["balance"], view["reserved"]) == (100, 60)
    status, reason = await driver.command_status("d", "h2")
    assert (status, (reason or "").split(":")[0]) == ("rejected", "insufficient-available")
    await driver.commands(
        command("capture", "d", "cap1", hold_id="hold-1", amount=25, request_id="job-1",
                endpoint="POST /v1/jobs"),
        command("hold", "d", "h3", hold_id="hold-3", amount=75, expires_at=at(60)),
        command("release", "d", "rel3", hold_id="hold-3"),
        command("capture", "d", "cap3", hold_id="hold-3", request_id="job-3",
                endpoint="POST /v1/jobs"),
    )  # fmt: skip
    await driver.settled()
    view = await driver.view("d")
    assert (view["balance"], view["reserved"]) == (75, 0)
    status, reason = await driver.command_status("d", "cap3")
    assert (status, (reason or "").split(":")[0]) == ("rejected", "unknown-hold")
    entries = await driver.entries("d")
    assert [(e["reason"], e["delta"], e["reserved_delta"]) for e in entries[1:]] == [
        ("hold", 0, 60),
        ("release", 0, -60),
        ("consume", -25, 0),
        ("hold", 0, 75),
        ("release", 0, -75),
    ]


async def test_two_holds_racing_never_reserve_the_same_credits(driver: Driver) -> None:
    await driver.commands(grant("e", 100, "g"))
    await driver.settled()
    racing = [
        command("hold", "e", f"h{n}", hold_id=f"hold-{n}", amount=40, expires_at=at(60))
        for n in range(5)
    ]
    await driver.commands(*racing)
    await driver.settled()
    view = await driver.view("e")
    assert view["reserved"] == 80
    statuses = [(await driver.command_status("e", f"h{n}"))[0] for n in range(5)]
    assert sorted(statuses) == ["applied", "applied", "rejected", "rejected", "rejected"]


async def test_expiry_crossing_is_decided_in_event_time(driver: Driver) -> None:
    await driver.commands(grant("f", 10, "promo", bucket="promotional", expires_at=at(30)))
    await driver.commands(grant("f", 10, "paid", bucket="purchased"))
    await driver.settled()
    # A call at minute 20 draws the promo; a call at minute 45 finds it expired at minute 30.
    await driver.usage(
        usage("f", "r-before", credits=4, occurred_at=at(20)),
        usage("f", "r-after", credits=3, occurred_at=at(45)),
    )
    await driver.settled()
    entries = await driver.entries("f")
    assert draws(entries[2:]) == [
        ("consume", "promo", -4),
        ("expiry", "promo", -6),
        ("consume", "paid", -3),
    ]
    assert entries[3]["occurred_at"].isoformat() == at(30)
    view = await driver.view("f")
    assert view["balance"] == 7
    assert view["grants"]["promo"]["closed"] is True


async def test_the_scheduler_expires_a_quiet_accounts_grant(namespace: Settings) -> None:
    # Expires in the writer's past (the tests' T0 is days ago): the scheduler publishes `expire`.
    settings = namespace.model_copy(update={"expiry_scan_interval_s": 0.2})
    async with running(settings, ("writer", "projector")) as pipeline:
        driver = Driver(settings, pipeline.pool, pipeline.producer, pipeline.tasks)
        await driver.commands(grant("g", 10, "promo", bucket="promotional", expires_at=at(5)))
        await driver.settled()
        await _wait_for_expiry(driver)
        entries = await driver.entries("g")
    assert draws(entries) == [("grant", "promo", 10), ("expiry", "promo", -10)]


async def _wait_for_expiry(driver: Driver) -> None:
    async def expired() -> bool:
        return bool(
            await driver.pool.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE account_id = 'g' AND reason = 'expiry'"
            )
        )

    await wait_until(expired, "the scheduler's expire command to expire the grant")


async def test_beyond_the_credit_limit_a_call_is_still_charged_in_full_and_owed(
    driver: Driver,
) -> None:
    await driver.commands(
        grant("h", 5, "g"), command("account_settings", "h", "s1", credit_limit=10)
    )
    await driver.settled()
    await driver.usage(usage("h", "r1", credits=30))
    await driver.settled()
    entries = await driver.entries("h")
    assert draws(entries[1:]) == [("consume", "g", -5), ("consume", None, -25)]
    assert entries[-1]["metadata"]["owed"] == 25
    assert (await driver.view("h"))["balance"] == -25
    alerts = await read_topic(driver.settings, driver.settings.alerts_topic, 3)
    kinds = sorted(json.loads(r.value)["type"] for r in alerts)
    assert kinds == ["credit_limit_exceeded", "depleted", "overage"]


async def test_low_balance_alerts_once_per_crossing(driver: Driver) -> None:
    await driver.commands(
        grant("i", 100, "g1"),
        command("account_settings", "i", "s1", low_balance_threshold=50,
                auto_reload={"threshold": 20, "amount": 100, "max_per_day": 1}),
    )  # fmt: skip
    await driver.settled()
    for n in range(6):  # 100 → 40: crosses 50 once
        await driver.usage(usage("i", f"r{n}", credits=10))
    await driver.settled()
    await driver.commands(grant("i", 100, "g2"))  # back above: re-armed
    await driver.settled()  # across topics, order is reading order: let the grant land first
    await driver.usage(*(usage("i", f"s{n}", credits=30) for n in range(4)))  # 140 → 20
    await driver.usage(usage("i", "t1", credits=5))  # 15: below the auto-reload line
    await driver.settled()
    alerts = [
        json.loads(r.value)
        for r in await read_topic(driver.settings, driver.settings.alerts_topic, 3)
    ]
    assert sorted(a["type"] for a in alerts) == [
        "auto_reload_requested",
        "low_balance",
        "low_balance",
    ]
    assert len({a["alert_id"] for a in alerts}) == 3


async def test_void_takes_a_grants_remainder(driver: Driver) -> None:
    await driver.commands(grant("j", 50, "g1"), grant("j", 5, "g2", bucket="gift"))
    await driver.settled()
    await driver.usage(usage("j", "r1", credits=7))
    await driver.settled()
    await driver.commands(command("void_grant", "j", "v1", grant_id="g1"))
    await driver.commands(command("void_grant", "j", "v2", grant_id="g1"))
    await driver.settled()
    entries = await driver.entries("j")
    assert draws(entries[2:]) == [("consume", "g2", -5), ("consume", "g1", -2), ("void", "g1", -48)]
    status, reason = await driver.command_status("j", "v2")
    assert (status, (reason or "").split(":")[0]) == ("rejected", "unknown-grant")
    assert (await driver.view("j"))["balance"] == 0
