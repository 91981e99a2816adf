"""`/docs` (Swagger UI) and `/redoc` (ReDoc) work without internet: Debian's Chromium, headless,
with every host but 127.0.0.1 unresolvable and every non-loopback request sent to a dead proxy,
opens each page served by the real app and sees the operations rendered; the browser's own
network log shows the page asked nothing of any other origin.

The pages need only the app's routes (`/openapi.json` and the assets), no database or broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from services.api.app import create_app
from services.platform.settings import Settings
from tests.e2e.test_dashboard import (
    CHROMEDRIVER,
    CHROMIUM,
    SERVER_START_S,
    free_port,
    wait_for,
)
from tests.pipeline import wait_until

pytestmark = pytest.mark.e2e
# Operations each page must show (Swagger UI with displayOperationId shows the ids).
SWAGGER_SHOWS = ("getBalance", "checkCredits", "listLedgerEntries", "createAccount")
REDOC_SHOWS = ("/v1/credits/balance", "/v1/admin/accounts")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def docs_url() -> AsyncIterator[str]:
    unused: Any = None
    app = create_app(Settings.model_construct(admin_token="t"), unused, unused)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        if serving.done():
            raise AssertionError("the API server could not start")
        return bool(server.started)

    await wait_until(started, "the API server to start", SERVER_START_S)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, SERVER_START_S)


def offline_browser(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-features=OptimizationHints,MediaRouter",
        f"--user-data-dir={profile}", "--window-size=1280,2000",
        # No network but loopback: no name resolves except 127.0.0.1, and anything not on
        # loopback (Chromium bypasses the proxy only for loopback) goes to a port nobody serves.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def requested_urls(browser: webdriver.Chrome) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's DevTools network log)."""
    urls = []
    log: list[dict[str, Any]] = browser.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def assert_only_local(urls: list[str], origin: str) -> None:
    # Over the network only (chrome:// pages such as the new tab are the browser's own).
    fetched = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    foreign = [u for u in fetched if f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" != origin]
    assert not foreign, f"the page asked other origins: {foreign}"
    assert any(u.endswith("/openapi.json") for u in urls), urls


def _shows_all(browser: WebDriver, texts: tuple[str, ...]) -> bool:
    page = browser.find_element(By.TAG_NAME, "body").text
    return all(text in page for text in texts)


def _open(browser: WebDriver, url: str, texts: tuple[str, ...], what: str) -> None:
    browser.get(url)
    wait_for(browser, lambda b: _shows_all(b, texts), f"{what} to show {texts}")


async def test_swagger_ui_and_redoc_render_the_operations_offline(docs_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="creditledger-docs-") as profile:
        browser = await asyncio.to_thread(offline_browser, profile)
        try:
            await asyncio.to_thread(_open, browser, f"{docs_url}/docs", SWAGGER_SHOWS, "/docs")
            operations = browser.find_elements(By.CSS_SELECTOR, ".opblock")
            assert len(operations) >= 30, f"Swagger UI shows {len(operations)} operations"
            assert_only_local(requested_urls(browser), docs_url)

            await asyncio.to_thread(_open, browser, f"{docs_url}/redoc", REDOC_SHOWS, "/redoc")
            assert_only_local(requested_urls(browser), docs_url)
        finally:
            await asyncio.to_thread(browser.quit)


async def test_no_network_really_means_none(docs_url: str) -> None:
    """The browser's settings hold: a page from another origin does not load (so the test
    above would fail if the pages still needed a CDN)."""
    with tempfile.TemporaryDirectory(prefix="creditledger-docs-") as profile:
        browser = await asyncio.to_thread(offline_browser, profile)
        try:
            script = (
                "const done = arguments[arguments.length - 1];"
                "fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css')"
                ".then(() => done('loaded'), () => done('failed'));"
            )
            await asyncio.to_thread(browser.get, f"{docs_url}/docs")  # a page without a CSP
            outcome = await asyncio.to_thread(browser.execute_async_script, script)
            assert outcome == "failed"
        finally:
            await asyncio.to_thread(browser.quit)
