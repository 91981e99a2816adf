"""The Python clients (sync and async) on the admin side of a live API and on the newer reads:
a service token minted through the admin API reading two accounts by `account=`; the accounts
list paged and one account; explain and balance `as_of`/`by` equal to the API's own answers
(a plain httpx request); a webhook registered, receiving a low-balance alert, its deliveries
listed, then deleted; a dashboard sign-in link traded for a key; account settings, recent
alerts and the daily balance.

Per account: 20 credits granted, then (after `mid`) 10 more; a low-balance threshold of 25; a
scan of 7: balance 23, crossing the threshold (one `low_balance` alert, one webhook delivery).
The other account is granted 70. The server and its fixture: test_clients.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.client import (
    AsyncCreditLedgerClient,
    ClientConfigError,
    CreditLedgerClient,
    ProblemError,
)
from tests.integration.test_clients import DEADLINE_S, LiveApi, scan
from tests.integration.test_clients import live_api as live_api  # the fixture, shared
from tests.pipeline import wait_until

pytestmark = pytest.mark.integration

FIRST, SECOND, OTHER, THRESHOLD, SCAN = 20, 10, 70, 25, 7
LEFT = FIRST + SECOND - SCAN


@dataclass(frozen=True)
class Accounts:
    mine: str
    other: str


def raw(api: LiveApi, path: str, token: str, **params: str) -> Any:
    """The API's own answer, without the client: a plain GET."""
    response = httpx.get(
        api.url + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def poll(probe: Callable[[], Any], what: str) -> Any:
    """`probe()` until it answers something truthy, within the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not (found := probe()):
        assert time.monotonic() < deadline, f"timed out after {DEADLINE_S} s waiting for {what}"
        time.sleep(0.1)
    return found


def session_token(url: str) -> str:
    assert "#session=" in url, url
    return url.split("#session=", 1)[1]


# --- the blocking client (in a worker thread: the loop serves the API) -------------------------


def sync_scenario(api: LiveApi, accounts: Accounts) -> None:
    mine, other = accounts.mine, accounts.other
    with CreditLedgerClient(api.url, admin_token=api.admin_token, account=mine) as admin:
        hook = admin.create_webhook(api.hooks.url, ["low_balance"], description="py sync")
        assert hook["secret"] and hook["events"] == ["low_balance"]
        listed = {w["id"]: w for w in admin.webhooks()["data"]}
        assert hook["id"] in listed and "secret" not in listed[hook["id"]]

        mid = sync_setup(admin, accounts)
        secret = admin.create_key()["secret"]
        sync_service_token(api, admin, accounts)

        first = admin.accounts(limit=1)
        assert first["hasMore"] and first["nextPage"] and len(first["data"]) == 1
        assert [a["accountId"] for a in admin.iter_accounts(limit=1)] == sorted([mine, other])
        one = admin.account()
        assert (one["accountId"], one["name"], one["registered"]) == (mine, "Mine", True)
        assert (one["balance"], one["available"]) == (LEFT, LEFT)

        with CreditLedgerClient(api.url, api_key=secret) as customer:
            explained = customer.balance_explain()
            own = raw(api, "/v1/credits/balance/explain", secret)
            assert explained.pop("asOf") <= own.pop("asOf")  # now, when each was asked
            assert explained == own
            assert explained["balance"] == LEFT
            assert sum(g["remaining"] for g in explained["grants"]) == LEFT
            then = customer.balance(as_of=mid, by="recorded")
            assert then == raw(api, "/v1/credits/balance", secret, as_of=mid.isoformat(),
                               by="recorded")  # fmt: skip
            assert then["balance"] == FIRST
            past = customer.balance_explain(as_of=mid, by="occurred")
            assert past == raw(api, "/v1/credits/balance/explain", secret,
                               as_of=mid.isoformat(), by="occurred")  # fmt: skip

            settings = customer.account_settings()
            assert (settings["accountId"], settings["lowBalanceThreshold"]) == (mine, THRESHOLD)
            # Derived with today's threshold (the answer's `basis`): the first grant (20) is
            # below it too; the scan's crossing is the newest.
            alerts = customer.alerts(days=2, limit=10)["alerts"]
            assert {a["type"] for a in alerts} == {"low_balance"}, alerts
            assert (alerts[0]["seq"], alerts[0]["data"]["available"]) == (3, LEFT), alerts
            daily = customer.daily_balance(days=3)["days"]
            assert len(daily) == 3 and daily[-1]["balance"] == LEFT
            assert sum(day["change"] for day in daily) == LEFT

        sync_webhook_deliveries(api, admin, hook["id"], mine)
        sync_dashboard(api, admin, mine)


def sync_setup(admin: CreditLedgerClient, accounts: Accounts) -> datetime:
    """Both accounts funded, the threshold set and crossed; answers the instant between grants."""
    admin.create_account(accounts.mine, "Mine")
    admin.create_account(accounts.other, "Other")
    applied(admin.wait_for_command(admin.grant(FIRST)["commandId"], timeout_s=DEADLINE_S))
    mid = datetime.now(UTC)
    time.sleep(0.01)  # a clock tick between the instant and the next grant's recording
    applied(admin.wait_for_command(admin.grant(SECOND)["commandId"], timeout_s=DEADLINE_S))
    other = admin.grant(OTHER, account_id=accounts.other)["commandId"]
    applied(admin.wait_for_command(other, timeout_s=DEADLINE_S))
    settings = admin.settings(low_balance_threshold=THRESHOLD)["commandId"]
    applied(admin.wait_for_command(settings, timeout_s=DEADLINE_S))
    admin.send_events([scan(accounts.mine, SCAN)])
    poll(lambda: admin.account()["balance"] == LEFT, "the scan in the balance")
    return mid


def sync_service_token(api: LiveApi, admin: CreditLedgerClient, accounts: Accounts) -> None:
    token = admin.create_admin_token("py-sync-reader", ["credits:read"])
    with CreditLedgerClient(api.url, admin_token=token["secret"], account=accounts.mine) as svc:
        assert svc.balance()["balance"] == LEFT
        assert svc.balance(account=accounts.other)["balance"] == OTHER
        assert svc.check(50, account=accounts.other)["allowed"] is True
        refused = svc.check(50)
        assert (refused["allowed"], refused["available"]) == (False, LEFT)
        with pytest.raises(ProblemError) as listing:
            svc.accounts()  # credits:read reads named accounts; it does not enumerate them
        assert (listing.value.status, listing.value.slug) == (403, "insufficient-scope")
        admin.revoke_admin_token(token["tokenId"])
        with pytest.raises(ProblemError) as revoked:
            svc.balance(account=accounts.other)
        assert (revoked.value.status, revoked.value.slug) == (403, "token-revoked")
    with (
        CreditLedgerClient(api.url, admin_token=token["secret"]) as nameless,
        pytest.raises(ClientConfigError),
    ):
        nameless.balance()


def sync_webhook_deliveries(
    api: LiveApi, admin: CreditLedgerClient, hook_id: str, account: str
) -> None:
    def delivered() -> list[Any]:
        page = admin.webhook_deliveries(hook_id, limit=5)
        return [d for d in page["data"] if d["status"] == "delivered"]

    (delivery,) = poll(delivered, "the low-balance alert delivered to the receiver")
    assert (delivery["eventType"], delivery["accountId"]) == ("low_balance", account)
    assert delivery["attempts"][0]["statusCode"] == 200
    assert any(delivery["eventId"].encode() in body for body in api.hooks.bodies)
    assert [d["eventId"] for d in admin.iter_webhook_deliveries(hook_id, limit=1)] == [
        delivery["eventId"]
    ]
    admin.delete_webhook(hook_id)
    assert hook_id not in {w["id"] for w in admin.webhooks()["data"]}
    with pytest.raises(ProblemError) as gone:
        admin.delete_webhook(hook_id)
    assert gone.value.status == 404


def sync_dashboard(api: LiveApi, admin: CreditLedgerClient, account: str) -> None:
    link = admin.dashboard_session()
    assert link["url"].startswith(api.url) and link["expiresAt"]
    with CreditLedgerClient(api.url) as page:
        key = page.exchange_dashboard_session(session_token(link["url"]))
        assert key["accountId"] == account
        with pytest.raises(ProblemError) as reused:
            page.exchange_dashboard_session(session_token(link["url"]))
        assert reused.value.status == 401  # single-use
    with CreditLedgerClient(api.url, api_key=key["secret"]) as dashboard:
        assert dashboard.balance()["balance"] == LEFT


def applied(outcome: Any) -> None:
    assert outcome["status"] == "applied", outcome


async def test_the_sync_client_on_the_admin_api(live_api: LiveApi) -> None:
    accounts = Accounts("py_sync_mine", "py_sync_other")
    await asyncio.to_thread(sync_scenario, live_api, accounts)


# --- the asyncio client ------------------------------------------------------------------------


async def until(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    found: list[Any] = []

    async def check() -> bool:
        found[:] = [await probe()]
        return bool(found[0])

    await wait_until(check, what, DEADLINE_S)
    return found[0]


async def test_the_async_client_on_the_admin_api(live_api: LiveApi) -> None:
    api, mine, other = live_api, "py_async_mine", "py_async_other"
    async with AsyncCreditLedgerClient(api.url, admin_token=api.admin_token, account=mine) as admin:
        hook = await admin.create_webhook(api.hooks.url, description="py async: every type")
        assert hook["events"] == [] and hook["secret"]
        await admin.create_account(mine, "Mine")
        await admin.create_account(other, "Other")
        applied(await admin.wait_for_command((await admin.grant(FIRST))["commandId"]))
        mid = datetime.now(UTC)
        await asyncio.sleep(0.01)  # a clock tick between the instant and the next grant
        applied(await admin.wait_for_command((await admin.grant(SECOND))["commandId"]))
        funded = await admin.grant(OTHER, account_id=other)
        applied(await admin.wait_for_command(funded["commandId"]))
        threshold = await admin.settings(low_balance_threshold=THRESHOLD)
        applied(await admin.wait_for_command(threshold["commandId"]))
        await admin.send_events([scan(mine, SCAN)])

        token = await admin.create_admin_token("py-async-reader", ["credits:read"])
        async with AsyncCreditLedgerClient(api.url, admin_token=token["secret"]) as svc:
            scanned = await until(
                lambda: async_equals(svc.balance(account=mine), "balance", LEFT), "the scan"
            )
            assert scanned
            assert (await svc.balance(account=other))["balance"] == OTHER
            assert (await svc.check(50, account=other))["allowed"] is True
            assert (await svc.check(50, account=mine))["allowed"] is False

            explained = await svc.balance_explain(account=mine)
            assert explained["balance"] == LEFT and explained["accountId"] == mine
            then = await svc.balance(as_of=mid, by="recorded", account=mine)
            assert then["balance"] == FIRST
            settings = await svc.account_settings(account=mine)
            assert settings["lowBalanceThreshold"] == THRESHOLD
            alerts = (await svc.alerts(account=mine, limit=1))["alerts"]
            assert [(a["type"], a["data"]["available"]) for a in alerts] == [("low_balance", LEFT)]
            daily = (await svc.daily_balance(days=1, account=other))["days"]
            assert [d["balance"] for d in daily] == [OTHER]

        pages = [page async for page in admin.pages(admin._calls.accounts(limit=1))]
        assert [p["data"][0]["accountId"] for p in pages] == sorted([mine, other])
        assert [a["accountId"] async for a in admin.iter_accounts(limit=1)] == sorted([mine, other])
        assert (await admin.account(other))["balance"] == OTHER

        async def delivered() -> list[Any]:
            page = await admin.webhook_deliveries(hook["id"], limit=5)
            return [d for d in page["data"] if d["status"] == "delivered"]

        (delivery,) = await until(delivered, "the low-balance alert delivered")
        assert (delivery["eventType"], delivery["accountId"]) == ("low_balance", mine)
        await admin.delete_webhook(hook["id"])
        assert hook["id"] not in {w["id"] for w in (await admin.webhooks())["data"]}

        link = await admin.dashboard_session(other)
        async with AsyncCreditLedgerClient(api.url) as page:
            key = await page.exchange_dashboard_session(session_token(link["url"]))
        assert key["accountId"] == other
        async with AsyncCreditLedgerClient(api.url, api_key=key["secret"]) as dashboard:
            assert (await dashboard.balance())["balance"] == OTHER


async def async_equals(answer: Awaitable[Any], name: str, expected: object) -> bool:
    return bool((await answer)[name] == expected)
