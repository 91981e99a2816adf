"""The customer dashboard in a real browser (Debian's headless Chromium) over the real stack.

Writer and projector run in this process; the API with the dashboard router is served by uvicorn
on a free port. The account's data goes through Kafka like any other; the browser signs in with a
real key and what it shows is checked against the API and against the events' arithmetic.
Selenium blocks, so the browser is driven in a worker thread while this loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from services.api import routes_dashboard
from services.api.app import create_app
from services.platform.settings import Settings
from services.runtime import running
from tests.messages import grant, usage
from tests.pipeline import Driver, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_WAIT_S = 30.0
SERVER_START_S = 30.0
ACCOUNT = "acct_dashboard"
SCAN = "POST /v1/scanner/scan"
REPORT = "GET /v1/scanner/report"
GRANT_CREDITS = 1000
USAGE_EVENTS = 150
DAYS_BACK = (0, 1, 2, 4, 7, 11)  # the UTC days the usage lands on, all within the last 30
LEDGER_PAGE_ROWS = 25  # app.js LEDGER_LIMIT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the test's loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Stack:
    url: str
    admin_token: str
    driver: Driver
    app: FastAPI  # its `state.settings` may be replaced to change a setting mid-test


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    # The runtime serves its own (ops-only) HTTP on api_port: give it a free one.
    settings = namespace.model_copy(update={"api_port": free_port()})
    async with running(settings, ("writer", "projector")) as handle:
        app = create_app(settings, handle.pool, handle.producer)
        if not any(getattr(route, "path", None) == "/dashboard" for route in app.routes):
            app.include_router(routes_dashboard.router)  # until app.py includes it itself
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = _EmbeddedServer(config)
        serving = asyncio.create_task(server.serve())

        async def started() -> bool:
            if serving.done():
                raise AssertionError("the dashboard's API server could not start")
            return bool(server.started)

        await wait_until(started, "the API server to start", SERVER_START_S)
        assert settings.admin_token is not None
        try:
            yield Stack(
                f"http://127.0.0.1:{port}",
                settings.admin_token,
                Driver(settings, handle.pool, handle.producer, handle.tasks),
                app,
            )
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, SERVER_START_S)


@dataclass(frozen=True)
class Expected:
    """What the page must show, from the API's answer and the events' arithmetic."""

    balance: int
    available: int
    ledger_seq: int
    credits_by_day: dict[str, int]  # only days that charged something (net of refunds)
    scan_requests: int


def usage_events(now: datetime) -> list[dict[str, Any]]:
    """150 calls over six UTC days: scans, some dearer reports, and failed scans (refunded)."""
    events = []
    for i in range(USAGE_EVENTS):
        occurred = now - timedelta(days=DAYS_BACK[i % len(DAYS_BACK)], minutes=5 + i % 50)
        if i % 10 == 9:
            endpoint, credits, status = REPORT, 2, 200
        else:
            endpoint, credits, status = SCAN, 1, 500 if i % 25 == 0 else 200
        events.append(
            usage(
                ACCOUNT,
                f"req-{i:04d}",
                status,
                endpoint=endpoint,
                credits=credits,
                occurred_at=occurred.isoformat(),
            )
        )
    return events


def net_credits_by_day(events: list[dict[str, Any]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for event in events:
        if event["status_code"] < 400:  # a failed call is refunded: it nets to zero
            day = datetime.fromisoformat(event["occurred_at"]).astimezone(UTC).date()
            totals[day.isoformat()] += event["credits"]
    return {day: credits for day, credits in totals.items() if credits}


async def seed(stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    """An account with a key, a grant, then the usage; returns the key's secret and the usage."""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        created = await http.post(
            "/v1/admin/accounts",
            json={"account_id": ACCOUNT, "name": "Dashboard Ltd"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        key = await http.post(f"/v1/admin/accounts/{ACCOUNT}/keys", headers=admin)
        assert key.status_code == 201, key.text
        secret: str = key.json()["secret"]
    now = datetime.now(UTC)
    # The grant first and settled, so no call can be read before the credits exist.
    await stack.driver.commands(
        grant(
            ACCOUNT,
            GRANT_CREDITS,
            "grant-dashboard",
            name="Starter pack",
            source="pack_starter",
            occurred_at=(now - timedelta(days=20)).isoformat(),
        )
    )
    await stack.driver.settled()
    events = usage_events(now)
    await stack.driver.usage(*events)
    await stack.driver.settled()
    return secret, events


def new_browser(profile: str) -> WebDriver:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Debian's chromium and chromium-driver are needed: `make system-deps` installs them"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,2600",
    ):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def page_errors(browser: WebDriver) -> str:
    """The page's own error messages, to say why a wait failed."""
    shown = []
    for element in browser.find_elements(By.CSS_SELECTOR, "[role=alert], .section-error"):
        text = element.text.strip()
        if text:
            shown.append(f"#{element.get_attribute('id')}: {text}")
    return "; ".join(shown) or "no error shown"


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    try:
        return WebDriverWait(
            browser,
            BROWSER_WAIT_S,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {BROWSER_WAIT_S} s waiting for {what} ({page_errors(browser)})"
        ) from None


def text_of(browser: WebDriver, test_id: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f"[data-testid={test_id}]").text


def shown(browser: WebDriver, test_id: str) -> bool:
    elements = browser.find_elements(By.CSS_SELECTOR, f"[data-testid={test_id}]")
    return bool(elements) and elements[0].is_displayed()


def first_ledger_seq(browser: WebDriver) -> int | None:
    """Read in one script: the table is re-rendered as pages change, so no element is held."""
    seq = browser.execute_script(
        "const row = document.querySelector('[data-testid=ledger-row]');"
        "return row ? row.dataset.seq : null;"
    )
    return int(seq) if seq else None


def sign_in(browser: WebDriver, key: str) -> None:
    field = browser.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.ID, "sign-in").click()


def drive_dashboard(url: str, secret: str, expected: Expected, screenshot: Path) -> None:
    """Everything the browser does, in order: what depends only on the balance endpoint first."""
    with tempfile.TemporaryDirectory(prefix="dashboard-chromium-") as profile:
        browser = new_browser(profile)
        try:
            browser.set_page_load_timeout(BROWSER_WAIT_S)
            browser.get(f"{url}/dashboard")
            wait_for(browser, lambda b: shown(b, "signin"), "the sign-in box")
            assert browser.title.startswith("Credits dashboard")
            assert browser.find_element(By.CSS_SELECTOR, "label[for=api-key]").text == "API key"

            # A wrong key: the problem's detail is shown and the dashboard stays hidden.
            sign_in(browser, "cl_live_not-a-real-key")
            wait_for(browser, lambda b: shown(b, "error"), "the error for a wrong key")
            assert "401" in text_of(browser, "error")
            assert "not valid" in text_of(browser, "error")
            assert not shown(browser, "dashboard")

            # GET /v1/credits/balance: the figures exactly as the API answers them.
            sign_in(browser, secret)
            wait_for(browser, lambda b: shown(b, "dashboard"), "the dashboard after sign-in")
            balance = browser.find_element(By.ID, "balance")
            wait_for(
                browser,
                lambda _: balance.get_attribute("data-value") == str(expected.balance),
                f"the balance {expected.balance}",
            )
            assert balance.text == f"{expected.balance:,}"
            assert text_of(browser, "available") == f"{expected.available:,}"
            assert text_of(browser, "reserved") == "0"
            assert text_of(browser, "account-id") == ACCOUNT
            buckets = browser.find_elements(By.CSS_SELECTOR, "[data-testid=bucket-row]")
            assert [row.get_attribute("data-kind") for row in buckets] == ["purchased"]
            assert not shown(browser, "error")
            stored = browser.execute_script("return sessionStorage.getItem('creditledger.apiKey')")
            assert stored == secret

            # GET /v1/credits/activity: one bar group per UTC day that charged credits.
            wait_for(
                browser,
                lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=activity-day]"),
                "the activity chart's bars",
            )
            days = browser.find_elements(By.CSS_SELECTOR, "[data-testid=activity-day]")
            charted = {d.get_attribute("data-day"): d.get_attribute("data-credits") for d in days}
            assert charted == {day: str(c) for day, c in expected.credits_by_day.items()}
            assert len(days) == len(expected.credits_by_day)

            # GET /v1/usage?group_by=endpoint: every call to the endpoint, failed ones included.
            scan_row = f'[data-testid=usage-row][data-key="{SCAN}"]'
            wait_for(
                browser,
                lambda b: b.find_elements(By.CSS_SELECTOR, scan_row),
                "the usage table's row for the scan endpoint",
            )
            requests_cell = browser.find_element(By.CSS_SELECTOR, f"{scan_row} td.requests")
            assert requests_cell.text == f"{expected.scan_requests:,}"

            # GET /v1/credits/ledger: newest first; Next goes back in time, Previous returns.
            wait_for(browser, first_ledger_seq, "the ledger's rows")
            first = first_ledger_seq(browser)
            assert first == expected.ledger_seq
            rows = browser.find_elements(By.CSS_SELECTOR, "[data-testid=ledger-row]")
            assert len(rows) == LEDGER_PAGE_ROWS
            assert text_of(browser, "ledger-page") == "Page 1"
            browser.save_screenshot(str(screenshot))
            browser.find_element(By.ID, "ledger-next").click()
            wait_for(browser, lambda b: first_ledger_seq(b) != first, "the ledger's next page")
            second = first_ledger_seq(browser)
            assert second is not None and first is not None and second < first
            assert second == first - LEDGER_PAGE_ROWS
            assert text_of(browser, "ledger-page") == "Page 2"
            browser.find_element(By.ID, "ledger-prev").click()
            wait_for(browser, lambda b: first_ledger_seq(b) == first, "the ledger's first page")
            assert text_of(browser, "ledger-page") == "Page 1"
            assert not browser.find_element(By.ID, "ledger-prev").is_enabled()
        except (AssertionError, WebDriverException):
            with contextlib.suppress(WebDriverException):
                browser.save_screenshot(str(screenshot))
            raise
        finally:
            browser.quit()


async def test_dashboard_shows_the_accounts_balance_activity_usage_and_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    secret, events = await seed(stack)
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        page = await http.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await http.get("/dashboard/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/dashboard/static/..%2Froutes_dashboard.py")).status_code == 404
        answer = await http.get(
            "/v1/credits/balance", headers={"Authorization": f"Bearer {secret}"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
    charged = sum(e["credits"] for e in events if e["status_code"] < 400)
    assert body["balance"] == GRANT_CREDITS - charged
    failed = sum(1 for e in events if e["status_code"] >= 400)
    expected = Expected(
        balance=body["balance"],
        available=body["available"],
        ledger_seq=body["ledgerSeq"],
        credits_by_day=net_credits_by_day(events),
        scan_requests=sum(1 for e in events if e["endpoint"] == SCAN),
    )
    assert expected.ledger_seq == 1 + len(events) + failed  # grant, consumes, refunds
    assert len({date.fromisoformat(day) for day in expected.credits_by_day}) >= 2
    screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    await asyncio.to_thread(drive_dashboard, stack.url, secret, expected, screenshot)
