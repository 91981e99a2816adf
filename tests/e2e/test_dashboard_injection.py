"""Usage whose endpoints carry HTML and script, shown by the dashboard in a real browser
(Debian's headless Chromium) over the real stack: every payload appears as text, verbatim, no
element of it enters the page, and none of its script runs (a canary it would set stays unset).

The page renders API data only through textContent (app.js), and its CSP forbids inline script:
this test would catch the first layer failing even with the second in place, since injected
markup is looked for in the DOM, not only for its script running.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.test_dashboard import (  # noqa: F401 (`stack` is the fixture)
    BROWSER_WAIT_S,
    Stack,
    new_browser,
    shown,
    sign_in,
    stack,
    wait_for,
)
from tests.messages import grant, usage

pytestmark = pytest.mark.e2e
ACCOUNT = "acct_xss"
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload="window.__pwned=3">',
    "javascript:window.__pwned=4",
    "{{constructor.constructor('window.__pwned=5')()}}",
    "</td></tr><tr><td>forged row</td></tr>",
]
INJECTED = "#ledger-body img, #ledger-body script, #ledger-body svg, #usage-body img, " + (
    "#usage-body script, #usage-body svg"
)


async def seed(live: Stack) -> str:
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        created = await http.post("/v1/admin/accounts", json={"account_id": ACCOUNT, "name": "X"},
                                  headers=admin)  # fmt: skip
        assert created.status_code == 201, created.text
        key = await http.post(f"/v1/admin/accounts/{ACCOUNT}/keys", headers=admin)
        secret: str = key.json()["secret"]
    now = datetime.now(UTC)
    await live.driver.commands(
        grant(ACCOUNT, 100, "xss-grant", occurred_at=(now - timedelta(hours=1)).isoformat())
    )
    await live.driver.settled()
    await live.driver.usage(*(
        usage(ACCOUNT, f"xss-{i}", endpoint=text, credits=1,
              occurred_at=(now - timedelta(minutes=10 - i)).isoformat())
        for i, text in enumerate(PAYLOADS)
    ))  # fmt: skip
    await live.driver.settled()
    return secret


def cell_texts(browser: WebDriver, selector: str) -> list[str]:
    texts: list[str] = browser.execute_script(
        f"return [...document.querySelectorAll({selector!r})].map(c => c.textContent);"
    )
    return texts


def drive(url: str, secret: str) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-xss-") as profile:
        browser = new_browser(profile)
        try:
            browser.set_page_load_timeout(BROWSER_WAIT_S)
            browser.get(f"{url}/dashboard")
            wait_for(browser, lambda b: shown(b, "signin"), "the sign-in box")
            sign_in(browser, secret)
            rows = "[data-testid=ledger-row]"
            wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, rows)) > len(PAYLOADS),
                     "the ledger rows")  # fmt: skip
            wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "[data-testid=usage-row]"),
                     "the usage rows")  # fmt: skip
            endpoints = cell_texts(browser, "#ledger-body tr td:last-child")
            assert sorted(t for t in endpoints if t) == sorted(PAYLOADS)
            usage_keys = cell_texts(browser, "[data-testid=usage-row] > :first-child")
            assert sorted(usage_keys) == sorted(PAYLOADS)
            assert browser.find_elements(By.CSS_SELECTOR, INJECTED) == []
            assert browser.execute_script("return window.__pwned === undefined")
            with pytest.raises(NoAlertPresentException):
                _ = browser.switch_to.alert.text
        finally:
            browser.quit()


async def test_injected_markup_is_shown_as_text(stack: Stack) -> None:  # noqa: F811
    secret = await seed(stack)
    await asyncio.to_thread(drive, stack.url, secret)
