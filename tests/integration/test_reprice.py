"""Re-rating history under another price book, on real Kafka and Postgres."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest

from schemas.price_book import copy_versions
from services.core.pricing import PriceBook, PriceVersion
from services.history.reprice import COLUMNS, reprice, totals, write_report
from tests.messages import T0, at, command, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
REPORTS = "GET /v1/reports/custom"  # not in the default book: priced at its default, 1
SCAN = "POST /v1/scanner/scan"


async def test_reprice_reports_the_exact_difference_for_a_price_change(driver: Driver) -> None:
    await driver.commands(grant("p", 1000, "g"))
    await driver.settled()
    calls = [usage("p", f"r{n}", endpoint=REPORTS, occurred_at=at(n)) for n in range(10)]
    calls += [usage("p", f"own{n}", credits=4, endpoint=REPORTS) for n in range(3)]
    calls += [usage("p", f"bad{n}", 503, endpoint=REPORTS) for n in range(2)]
    calls += [usage("p", "other-day", endpoint=REPORTS, occurred_at=at(60 * 24))]
    await driver.usage(*calls, calls[0])  # and a duplicate
    await driver.settled()
    book = PriceBook(version="2027-01", credits_by_endpoint={REPORTS: 3})
    end_of_day = T0.replace(hour=0, minute=0) + timedelta(days=1)
    rows = await reprice(driver.settings, driver.pool, book, T0, end_of_day)
    row = rows[("p", REPORTS, date(2026, 11, 21))]
    assert (row.calls, row.failed) == (15, 2)
    assert (row.charged, row.repriced) == (10 * 1 + 3 * 4, 10 * 3 + 3 * 4)
    assert (row.refunded, row.owed) == (0, 0)
    assert row.difference == 20
    assert totals(rows.values()).calls == 15  # the call of the next day is outside the range
    balance = await driver.pool.fetchval("SELECT balance FROM balance_view WHERE account_id='p'")
    assert balance == 1000 - 10 - 12 - 1  # live state untouched by the re-rating


async def test_reprice_shows_the_price_book_effect_alone_refunds_and_owed_apart(
    driver: Driver,
) -> None:
    # The book in force: version 1 from T0 prices the scan at 3 (stored ahead of the calls).
    v1 = PriceVersion(1, T0, default_credits=1, prices={SCAN: 3})
    async with driver.pool.acquire() as conn:
        await copy_versions(conn, [v1])
    await driver.commands(grant("q", 10, "g"))
    await driver.settled()
    calls = [usage("q", f"ok{n}", occurred_at=at(n + 1)) for n in range(5)]  # 15: 5 owed
    calls += [usage("q", f"bad{n}", 500, occurred_at=at(10 + n)) for n in range(3)]
    await driver.usage(*calls)
    await driver.settled()
    await driver.commands(command("refund", "q", "rf", request_id="ok0", amount=2, reason="x"))
    await driver.settled()
    assert await driver.command_status("q", "rf") == ("applied", None)

    end = T0 + timedelta(days=1)
    same = PriceBook(version="same", credits_by_endpoint={SCAN: 3})
    rows = await reprice(driver.settings, driver.pool, same, T0, end)
    row = rows[("q", SCAN, date(2026, 11, 21))]
    assert (row.calls, row.failed, row.charged, row.repriced) == (8, 3, 15, 15)
    assert row.difference == 0  # a book that changes nothing changes nothing
    assert (row.refunded, row.owed) == (2, 5)

    dearer = PriceBook(version="dearer", credits_by_endpoint={SCAN: 4})
    row = (await reprice(driver.settings, driver.pool, dearer, T0, end))[
        ("q", SCAN, date(2026, 11, 21))
    ]
    assert (row.charged, row.repriced, row.difference) == (15, 20, 5)
    assert (row.refunded, row.owed) == (2, 5)  # the same calls, refunds and owed amounts

    report = io.StringIO()
    write_report(rows, report)
    header, line = report.getvalue().splitlines()
    assert header == ",".join(COLUMNS)
    assert line == f"q,{SCAN},2026-11-21,8,3,15,15,0,2,5"
