"""Dashboard v2 in a real browser (Debian's headless Chromium) over the real stack, at 1400 px
and at 390 px: every panel shows the API's numbers (balance, owed, scheduled, the burn-down's
days, the forecast, grants in drawdown order, settings, alerts, the ledger page, usage), the
forecast date and the burn-down agree with the test's own arithmetic of what it published, and
the page never scrolls sideways. A dashboard sign-in link signs in, once, and stops working when
it expires.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_dashboard import (  # noqa: F401 (`stack` is the fixture)
    BROWSER_WAIT_S,
    Stack,
    new_browser,
    shown,
    sign_in,
    stack,
    wait_for,
)
from tests.integration.test_exact_money import alerts_of
from tests.messages import command, grant, usage

pytestmark = pytest.mark.e2e
RICH = "acct_dash_rich"  # plenty left: a run-out date, four grants, alert lines crossed
OWED = "acct_dash_owed"  # spent beyond its grant: owed, a scheduled grant, depleted
WIDTHS = (1400, 390)
SCAN = "POST /v1/scanner/scan"
REPORT = "GET /v1/scanner/report"
FORECAST_DAYS = 7
LEDGER_PAGE_ROWS = 25
SESSION_TTL_S = 15.0  # long enough for a browser to open the link, short enough to wait out
LOW_LINE, RELOAD_LINE, RELOAD_AMOUNT, CREDIT_LIMIT = 800, 300, 500, 50


@dataclass(frozen=True)
class GrantSpec:
    command_id: str
    name: str
    bucket: str
    amount: int
    priority: int
    expires_in_days: int | None


RICH_GRANTS = (
    GrantSpec("g-plan", "Monthly plan", "subscription", 400, 10, 5),
    GrantSpec("g-gift", "Welcome gift", "gift", 200, 10, 3),  # same priority, sooner: first
    GrantSpec("g-promo", "Launch promo", "promotional", 100, 20, 20),
    GrantSpec("g-pack", "Starter pack", "purchased", 600, 40, None),
)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def rich_messages(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Settings and four grants 25 days ago, then 130 calls over the last 21 days."""
    setup = [
        command(
            "account_settings",
            RICH,
            RICH + "-settings",
            occurred_at=_iso(now - timedelta(days=26)),
            low_balance_threshold=LOW_LINE,
            credit_limit=CREDIT_LIMIT,
            auto_reload={"threshold": RELOAD_LINE, "amount": RELOAD_AMOUNT, "max_per_day": 1},
        ),
    ]
    for spec in RICH_GRANTS:
        extra: dict[str, Any] = {
            "name": spec.name,
            "bucket": spec.bucket,
            "priority": spec.priority,
            "source": f"src-{spec.command_id}",
        }
        if spec.expires_in_days is not None:
            extra["expires_at"] = _iso(now + timedelta(days=spec.expires_in_days))
        setup.append(
            grant(
                RICH,
                spec.amount,
                spec.command_id,
                occurred_at=_iso(now - timedelta(days=25)),
                **extra,
            )
        )
    calls = []
    for i in range(130):
        days_back = (0, 1, 2, 3, 5, 6, 8, 9, 12, 15, 18, 20)[i % 12]
        endpoint, credits = (REPORT, 7) if i % 9 == 4 else (SCAN, 5)
        status = 500 if i % 13 == 6 else 200
        occurred = now - timedelta(days=days_back, minutes=3 + i % 40)
        calls.append(
            usage(
                RICH,
                f"rich-{i:04d}",
                status,
                endpoint=endpoint,
                credits=credits,
                occurred_at=_iso(occurred),
            )
        )
    return setup, calls


def owed_messages(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """50 credits, a grant of 500 starting in 3 days, and 80 credits of calls: 30 owed."""
    setup = [
        grant(
            OWED,
            50,
            "o-pack",
            name="Trial",
            bucket="purchased",
            occurred_at=_iso(now - timedelta(days=10)),
        ),
        grant(
            OWED,
            500,
            "o-next",
            name="Next month",
            bucket="subscription",
            occurred_at=_iso(now - timedelta(days=1)),
            effective_at=_iso(now + timedelta(days=3)),
        ),
    ]
    calls = [
        usage(
            OWED,
            f"owed-{i}",
            endpoint=SCAN,
            credits=10,
            occurred_at=_iso(now - timedelta(days=8 - i, minutes=10)),
        )
        for i in range(8)
    ]
    return setup, calls


async def seed(live: Stack, now: datetime) -> dict[str, str]:
    """Both accounts with a key each; returns the keys' secrets."""
    admin = {"Authorization": f"Bearer {live.admin_token}"}
    secrets: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        for account in (RICH, OWED):
            created = await http.post(
                "/v1/admin/accounts",
                headers=admin,
                json={"account_id": account, "name": account.upper()},
            )
            assert created.status_code == 201, created.text
            key = await http.post(f"/v1/admin/accounts/{account}/keys", headers=admin)
            assert key.status_code == 201, key.text
            secrets[account] = key.json()["secret"]
    setups, calls = zip(rich_messages(now), owed_messages(now), strict=True)
    await live.driver.commands(*setups[0], *setups[1])
    await live.driver.settled()
    await live.driver.usage(*calls[0], *calls[1])
    await live.driver.settled()
    return secrets


# --- what the test expects from its own arithmetic -------------------------------------------


def charged(event: dict[str, Any]) -> int:
    return int(event["credits"]) if event["status_code"] < 400 else 0  # failed: refunded


def event_day(event: dict[str, Any]) -> date:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC).date()


def burn_down(setup: list[dict[str, Any]], calls: list[dict[str, Any]], today: date) -> list[int]:
    """End-of-day balances for the 30 days to today: effective grants minus charged calls."""
    changes: dict[date, int] = {}
    for message in setup:
        if message["type"] == "grant":
            day = datetime.fromisoformat(message.get("effective_at", message["occurred_at"]))
            if day.astimezone(UTC).date() <= today:
                changes[day.astimezone(UTC).date()] = changes.get(day.date(), 0) + message["amount"]
    for event in calls:
        changes[event_day(event)] = changes.get(event_day(event), 0) - charged(event)
    first = today - timedelta(days=29)
    balance = sum(c for d, c in changes.items() if d < first)
    out = []
    for n in range(30):
        balance += changes.get(first + timedelta(days=n), 0)
        out.append(balance)
    return out


def run_out_day(balance: int, calls: list[dict[str, Any]], today: date) -> str:
    """At the last 7 UTC days' net rate: ceil(balance * 7 / charged) whole days from today."""
    recent = sum(charged(e) for e in calls if (today - event_day(e)).days < FORECAST_DAYS)
    if recent <= 0:
        return ""
    if balance <= 0:
        return today.isoformat()
    return (today + timedelta(days=math.ceil(balance * FORECAST_DAYS / recent))).isoformat()


def rule_order(api_grants: list[dict[str, Any]]) -> dict[str, int]:
    """The contract's drawdown order over the grants with credit spendable now."""
    now = datetime.now(UTC)
    open_ = [
        g
        for g in api_grants
        if g["state"] == "active"
        and g["remaining"] > 0
        and datetime.fromisoformat(g["schedule"]["effectiveAt"]) <= now
    ]
    never = datetime.max.replace(tzinfo=UTC)

    def key(g: dict[str, Any]) -> tuple[int, datetime, int]:
        expires = g["schedule"]["expiresAt"]
        return (
            g["priority"],
            datetime.fromisoformat(expires) if expires else never,
            g["grantedSeq"],
        )

    return {g["id"]: n for n, g in enumerate(sorted(open_, key=key), start=1)}


# --- what the API answers -------------------------------------------------------------------


@dataclass
class Answers:
    balance: dict[str, Any]
    daily: list[dict[str, Any]]
    grants: list[dict[str, Any]]
    order: dict[str, int]
    settings: dict[str, Any]
    alerts: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    usage: dict[str, int]
    activity: dict[str, int]


async def api_answers(url: str, secret: str) -> Answers:
    auth = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=auth) as http:

        async def get(path: str, **params: Any) -> dict[str, Any]:
            response = await http.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            body: dict[str, Any] = response.json()
            return body

        grants = (await get("/v1/credits/grants"))["data"]
        explain = await http.get("/v1/credits/balance/explain")
        order = (
            {  # a grant not spendable now has no place in the order (drawOrder null)
                g["grantId"]: g["drawOrder"]
                for g in explain.json()["grants"]
                if g["drawOrder"] is not None
            }
            if explain.status_code == 200
            else rule_order(grants)
        )
        return Answers(
            balance=await get("/v1/credits/balance"),
            daily=(await get("/v1/credits/balance/daily", days=30))["days"],
            grants=grants,
            order=order,
            settings=await get("/v1/account/settings"),
            alerts=(await get("/v1/account/alerts", days=30))["alerts"],
            ledger=(await get("/v1/credits/ledger", limit=LEDGER_PAGE_ROWS))["data"],
            usage={r["key"]: r["requests"] for r in (await get("/v1/usage"))["rows"]},
            activity={
                d["day"]: d["credits"]
                for d in (await get("/v1/credits/activity"))["days"]
                if d["credits"] or d["scans"]
            },
        )


# --- the browser ----------------------------------------------------------------------------


def set_width(browser: WebDriver, width: int) -> None:
    """The viewport exactly `width` CSS px wide (a phone's at 390: mobile emulation)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": 900,
            "deviceScaleFactor": 1,
            "mobile": width < 500,
        },
    )
    assert browser.execute_script("return window.innerWidth") == width


def js(browser: WebDriver, script: str) -> Any:
    return browser.execute_script(script)


def data_of(browser: WebDriver, selector: str, *names: str) -> list[list[str]]:
    """Each matching element's data-* attributes `names`, read in one script."""
    result: list[list[str]] = browser.execute_script(
        "const names = arguments[1];"
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => names.map(n => e.getAttribute('data-' + n) ?? ''));",
        selector,
        list(names),
    )
    return result


def all_loaded(browser: WebDriver, answers: Answers) -> bool:
    """Every panel has drawn what the API answered (panels load in parallel)."""
    counts = js(
        browser,
        """
        const n = (s) => document.querySelectorAll(s).length;
        return {days: n('[data-testid=burndown-day]'), grants: n('[data-testid=grant-row]'),
                ledger: n('[data-testid=ledger-row]'), usage: n('[data-testid=usage-row]'),
                alerts: n('[data-testid=alert-row]'), bars: n('[data-testid=activity-day]'),
                settings: document.getElementById('credit-limit').dataset.value ?? '',
                balance: document.getElementById('balance').dataset.value ?? '',
                forecast: document.getElementById('forecast').textContent};
    """,
    )
    return bool(
        counts["days"] == len(answers.daily)
        and counts["grants"] == len(answers.grants)
        and counts["ledger"] == len(answers.ledger)
        and counts["usage"] == len(answers.usage)
        and counts["alerts"] == len(answers.alerts)
        and counts["bars"] == len(answers.activity)
        and counts["settings"] != ""
        and counts["balance"] == str(answers.balance["balance"])
        and counts["forecast"] != "–"
    )


def check_panels(browser: WebDriver, answers: Answers, runs_out: str, width: int) -> None:
    wait_for(browser, lambda b: all_loaded(b, answers), f"every panel loaded at {width} px")
    balance = answers.balance
    for test_id in ("balance", "available", "reserved", "scheduled", "overage"):
        value = js(browser, f"return document.getElementById('{test_id}').dataset.value")
        assert value == str(balance[test_id]), (test_id, value, balance[test_id])
    assert shown(browser, "owed-note") == (balance["overage"] > 0)

    days = data_of(browser, "[data-testid=burndown-day]", "day", "balance")
    assert days == [[d["day"], str(d["balance"])] for d in answers.daily]
    forecast = browser.find_element(By.CSS_SELECTOR, "[data-testid=forecast]")
    assert forecast.get_attribute("data-runs-out") == runs_out
    if runs_out and balance["balance"] > 0:
        assert f"runs out on {runs_out}" in forecast.text

    rows = data_of(
        browser, "[data-testid=grant-row]", "grant-id", "order", "remaining", "amount", "expires-at"
    )
    by_id = {g["id"]: g for g in answers.grants}
    assert sorted(r[0] for r in rows) == sorted(by_id)
    for grant_id, order, remaining, amount, expires in rows:
        api = by_id[grant_id]
        assert order == str(answers.order.get(grant_id, "")), (grant_id, order)
        assert (remaining, amount) == (str(api["remaining"]), str(api["amount"]))
        assert expires == (api["schedule"]["expiresAt"] or "")
    ordered = [int(r[1]) for r in rows if r[1]]
    assert ordered == sorted(ordered)  # the table reads in drawdown order

    settings = answers.settings
    reload = settings["autoReload"] or {}
    for test_id, value in (
        ("low-threshold", settings["lowBalanceThreshold"]),
        ("reload-threshold", reload.get("threshold")),
        ("reload-amount", reload.get("amount")),
        ("reload-max", reload.get("maxPerDay")),
        ("credit-limit", settings["creditLimit"]),
    ):
        shown_value = js(browser, f"return document.getElementById('{test_id}').dataset.value")
        assert shown_value == ("" if value is None else str(value)), (test_id, shown_value, value)

    alerts = data_of(browser, "[data-testid=alert-row]", "type", "seq")
    assert alerts == [[a["type"], str(a["seq"])] for a in answers.alerts]

    ledger = data_of(browser, "[data-testid=ledger-row]", "seq")
    assert [int(r[0]) for r in ledger] == [e["seq"] for e in answers.ledger]
    after = js(
        browser,
        "return [...document.querySelectorAll('[data-testid=ledger-row]')]"
        ".map(r => r.cells[4].textContent)",
    )
    assert after == [f"{e['balance_after']:,}" for e in answers.ledger]

    usage_rows = data_of(browser, "[data-testid=usage-row]", "key", "requests")
    assert {k: int(n) for k, n in usage_rows} == answers.usage
    bars = data_of(browser, "[data-testid=activity-day]", "day", "credits")
    assert {d: int(c) for d, c in bars} == answers.activity

    check_layout(browser, width)


def check_layout(browser: WebDriver, width: int) -> None:
    """No sideways scroll; at phone width tables are stacked cards and chart text stays legible."""
    scroll, inner = js(browser, "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"sideways scroll at {width} px: {scroll} > {inner}"
    wide = js(
        browser,
        """
        return [...document.querySelectorAll('#dashboard *')]
          .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
          .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className);
    """,
    )
    assert wide == [], f"elements beyond the viewport at {width} px: {wide}"
    display = js(
        browser,
        "return getComputedStyle(document.querySelector('[data-testid=grant-row]')).display",
    )
    assert display == ("block" if width < 720 else "table-row")
    label_px = js(
        browser,
        """
        return Math.min(...[...document.querySelectorAll('.chart .axis-label')]
          .map(t => t.getBoundingClientRect().height));
    """,
    )
    assert label_px >= 10, f"chart text {label_px} px high at {width} px"


def full_page_screenshot(browser: WebDriver, path: Path, chunk_px: int = 1600) -> None:
    """The whole page, not only the viewport, in pieces `chunk_px` high (to look at after a
    run: `<name>-<width>-<n>.png`)."""
    width, height = js(
        browser, "const d = document.documentElement; return [d.clientWidth, d.scrollHeight]"
    )
    for n, top in enumerate(range(0, height, chunk_px)):
        clip = {"x": 0, "y": top, "width": width, "height": min(chunk_px, height - top), "scale": 1}
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.with_name(f"{path.stem}-{n}.png").write_bytes(base64.b64decode(shot["data"]))


def first_seq_is(seq: int) -> Callable[[WebDriver], bool]:
    def check(browser: WebDriver) -> bool:
        rows = data_of(browser, "[data-testid=ledger-row]", "seq")
        return bool(rows) and rows[0][0] == str(seq)

    return check


def drive_panels(url: str, secret: str, expected: dict[str, Any], shots: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dashboard-v2-") as profile:
        browser = new_browser(profile)
        try:
            browser.set_page_load_timeout(BROWSER_WAIT_S)
            for width in WIDTHS:
                set_width(browser, width)
                browser.get(f"{url}/dashboard")
                wait_for(browser, lambda b: shown(b, "signin") or shown(b, "dashboard"), "the page")
                if shown(browser, "signin"):
                    sign_in(browser, secret)
                wait_for(browser, lambda b: shown(b, "dashboard"), "the dashboard")
                check_panels(browser, expected["answers"], expected["runs_out"], width)
                # The ledger pages at this width too: Next goes back in time.
                if browser.find_element(By.ID, "ledger-next").is_enabled():
                    first = int(data_of(browser, "[data-testid=ledger-row]", "seq")[0][0])
                    browser.find_element(By.ID, "ledger-next").click()
                    wait_for(browser, first_seq_is(first - LEDGER_PAGE_ROWS), "the next page")
                    check_layout(browser, width)
                    browser.find_element(By.ID, "ledger-prev").click()
                    wait_for(browser, first_seq_is(first), "the first page again")
                full_page_screenshot(browser, shots / f"{expected['name']}-{width}.png")
        except (AssertionError, WebDriverException):
            with contextlib.suppress(WebDriverException):
                browser.save_screenshot(str(shots / f"{expected['name']}-failed.png"))
            raise
        finally:
            browser.quit()


async def test_every_panel_shows_the_apis_numbers_at_1400_and_390_px(
    stack: Stack,  # noqa: F811
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    secrets = await seed(stack, now)
    today = datetime.now(UTC).date()
    plans = {RICH: rich_messages(now), OWED: owed_messages(now)}
    for account, (setup, calls) in plans.items():
        answers = await api_answers(stack.url, secrets[account])
        # The API against the test's own arithmetic first, so the page is checked against truth.
        assert [d["balance"] for d in answers.daily] == burn_down(setup, calls, today)
        assert answers.daily[-1]["balance"] == answers.balance["balance"]
        runs_out = run_out_day(answers.balance["balance"], calls, today)
        # The alerts the page lists are those the writer published (all but credit limits).
        published = await alerts_of(stack.driver.settings, account)
        derived = [a["type"] for a in answers.alerts]
        assert sorted(derived) == sorted(t for t in published if t != "credit_limit_exceeded")
        if account == RICH:
            assert answers.balance["balance"] == 1300 - sum(charged(e) for e in calls)
            assert runs_out > today.isoformat()
            assert answers.settings["lowBalanceThreshold"] == LOW_LINE
            assert answers.settings["autoReload"] == {
                "threshold": RELOAD_LINE,
                "amount": RELOAD_AMOUNT,
                "maxPerDay": 1,
            }
            assert "low_balance" in {a["type"] for a in answers.alerts}
            assert len(answers.grants) == len(RICH_GRANTS)
        else:
            assert (answers.balance["balance"], answers.balance["overage"]) == (-30, 30)
            assert answers.balance["scheduled"] == 500
            assert {"depleted", "overage"} <= {a["type"] for a in answers.alerts}
            assert runs_out == today.isoformat()
        expected = {"answers": answers, "runs_out": runs_out, "name": account}
        await asyncio.to_thread(drive_panels, stack.url, secrets[account], expected, tmp_path)


# --- sign-in links ----------------------------------------------------------------------------


@contextlib.contextmanager
def browser_session() -> Iterator[WebDriver]:
    with tempfile.TemporaryDirectory(prefix="dashboard-link-") as profile:
        browser = new_browser(profile)
        try:
            browser.set_page_load_timeout(BROWSER_WAIT_S)
            yield browser
        finally:
            browser.quit()


def open_link(link: str, balance: int) -> str:
    """Signs in through the link; returns the key the page traded it for."""
    with browser_session() as browser:
        browser.get(link)
        wait_for(browser, lambda b: shown(b, "dashboard"), "the dashboard from the link")
        wait_for(
            browser,
            lambda b: b.find_element(By.ID, "balance").get_attribute("data-value") == str(balance),
            "the balance",
        )
        assert "#" not in browser.current_url  # the token left the address bar
        assert shown(browser, "session-note")
        secret: str = js(browser, "return sessionStorage.getItem('creditledger.apiKey')")
        # The session ends on its own at expiry: the page signs out and says why.
        wait_for_long(
            browser,
            lambda b: shown(b, "signin") and "session ended" in b.find_element(By.ID, "error").text,
            "the sign-out at expiry",
        )
        return secret


def wait_for_long(browser: WebDriver, condition: Any, what: str) -> None:
    """As `wait_for`, for as long as a session may still last."""
    try:
        WebDriverWait(browser, SESSION_TTL_S + BROWSER_WAIT_S, poll_frequency=0.2).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


def reopen_link(link: str) -> str:
    with browser_session() as browser:
        browser.get(link)
        wait_for(browser, lambda b: shown(b, "error"), "the refusal of a used link")
        assert shown(browser, "signin") and not shown(browser, "dashboard")
        text: str = browser.find_element(By.ID, "error").text
        return text


async def test_a_dashboard_link_signs_in_once_and_stops_working_when_it_expires(
    stack: Stack,  # noqa: F811
) -> None:
    secrets = await seed(stack, datetime.now(UTC))
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    settings = stack.app.state.settings
    short = settings.model_copy(update={"dashboard_session_ttl_s": SESSION_TTL_S})
    stack.app.state.settings = short
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        # Admins only, for a known account.
        path = f"/v1/admin/accounts/{OWED}/dashboard-sessions"
        refused = await http.post(path, headers={"Authorization": f"Bearer {secrets[OWED]}"})
        assert refused.status_code == 403
        assert (
            await http.post("/v1/admin/accounts/nobody/dashboard-sessions", headers=admin)
        ).status_code == 404
        made = await http.post(path, headers=admin)
        assert made.status_code == 201, made.text
        link, expires_at = made.json()["url"], datetime.fromisoformat(made.json()["expiresAt"])
        assert link.startswith(f"{stack.url}/dashboard#session=cl_dsl_")
        assert timedelta(0) < expires_at - datetime.now(UTC) <= timedelta(seconds=SESSION_TTL_S)
        balance = (
            await http.get(
                "/v1/credits/balance", headers={"Authorization": f"Bearer {secrets[OWED]}"}
            )
        ).json()
    session_key = await asyncio.to_thread(open_link, link, balance["balance"])
    assert datetime.now(UTC) >= expires_at
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        after = await http.get(
            "/v1/credits/balance", headers={"Authorization": f"Bearer {session_key}"}
        )
        assert after.status_code == 401, after.text
        assert after.json()["type"].endswith("session-expired")
        for read in ("/v1/credits/ledger", "/v1/account/settings", "/v1/credits/grants"):
            response = await http.get(read, headers={"Authorization": f"Bearer {session_key}"})
            assert response.status_code == 401, (read, response.text)
        token = link.split("#session=", 1)[1]
        again = await http.post("/dashboard/session-exchange", json={"token": token})
        assert again.status_code == 401
    assert "401" in await asyncio.to_thread(reopen_link, link)


async def test_a_link_is_single_use_and_its_key_reads_only_its_account(
    stack: Stack,  # noqa: F811
) -> None:
    secrets = await seed(stack, datetime.now(UTC))
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        made = await http.post(f"/v1/admin/accounts/{RICH}/dashboard-sessions", headers=admin)
        token = made.json()["url"].split("#session=", 1)[1]
        traded = await http.post("/dashboard/session-exchange", json={"token": token})
        assert traded.status_code == 201, traded.text
        assert traded.json()["accountId"] == RICH
        key = {"Authorization": f"Bearer {traded.json()['secret']}"}
        mine = await http.get("/v1/credits/balance", headers=key)
        assert mine.status_code == 200 and mine.json()["accountId"] == RICH
        assert (
            await http.post("/dashboard/session-exchange", json={"token": token})
        ).status_code == 401
        assert (
            await http.post("/dashboard/session-exchange", json={"token": "cl_dsl_guess"})
        ).status_code == 401
        stored = await stack.driver.pool.fetchrow(
            "SELECT token_sha256, key_id FROM dashboard_sessions WHERE account_id = $1", RICH
        )
        assert stored is not None and token not in stored["token_sha256"]
        assert stored["key_id"] == traded.json()["keyId"]
    assert secrets  # both accounts exist; the other's data stays unreachable (RLS, auth)
