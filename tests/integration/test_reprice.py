"""Re-rating history under another price book, on real Kafka and Postgres."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.core.pricing import PriceBook
from services.history.reprice import reprice, totals
from tests.messages import T0, at, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
REPORTS = "GET /v1/reports/custom"  # not in the default book: priced at its default, 1


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
    assert (row.calls, row.charged, row.repriced) == (15, 10 * 1 + 3 * 4, 10 * 3 + 3 * 4)
    assert row.difference == 20
    assert totals(rows.values()).calls == 15  # the call of the next day is outside the range
    balance = await driver.pool.fetchval("SELECT balance FROM balance_view WHERE account_id='p'")
    assert balance == 1000 - 10 - 12 - 1  # live state untouched by the re-rating
