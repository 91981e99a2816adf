"""Where a try connects: unless private addresses are allowed, to the public address the name
resolved to (Host header and TLS name kept); a name resolving to a private address is refused
without a request being made."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import httpx
import pytest

from services.webhooks import sender
from services.webhooks.store import Delivery, Endpoint
from services.webhooks.urls import IpAddress


def fake_resolver(*addresses: str) -> object:
    async def resolve(host: str, port: int) -> list[IpAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


async def test_a_name_is_pinned_to_the_address_it_was_checked_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sender, "resolve", fake_resolver("93.184.215.14"))
    url, extensions, host = await sender._pinned("https://hooks.example.com:8443/in?x=1", False)
    assert str(url) == "https://93.184.215.14:8443/in?x=1"
    assert extensions == {"sni_hostname": "hooks.example.com"}
    assert host == "hooks.example.com:8443"
    url, extensions, host = await sender._pinned("http://hooks.example.com/in", False)
    assert str(url) == "http://93.184.215.14/in" and extensions == {}
    assert host == "hooks.example.com"


async def test_with_private_addresses_allowed_the_url_is_used_as_given() -> None:
    url, extensions, host = await sender._pinned("http://localhost:9/x", True)
    assert str(url) == "http://localhost:9/x" and extensions == {} and host is None


async def test_a_name_that_resolves_to_a_private_address_is_refused_without_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sender, "resolve", fake_resolver("93.184.215.14", "10.0.0.5"))
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    endpoint = Endpoint("we_1", "https://rebind.example.com/x", frozenset(), "whsec_s", _now())
    delivery = Delivery("acct_1", "acct_1:1:depleted", endpoint, b"{}")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        answer = await sender.send(client, delivery, allow_private=False, timeout_s=2)
    assert answer.status_code is None and answer.error is not None
    assert "10.0.0.5" in answer.error and not answer.delivered
    assert requests == []


async def test_a_redirect_is_a_failed_try_and_not_followed() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

    endpoint = Endpoint("we_1", "http://127.0.0.1:9/x", frozenset(), "whsec_s", _now())
    delivery = Delivery("acct_1", "acct_1:1:depleted", endpoint, b'{"id":"x"}')
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        answer = await sender.send(client, delivery, allow_private=True, timeout_s=2)
    assert answer.status_code == 302 and not answer.delivered
    assert answer.error == "HTTP 302 (redirects are not followed)"
    [request] = requests
    assert request.headers["creditledger-signature"].startswith("t=")
    assert request.content == b'{"id":"x"}'


def _now() -> datetime:
    return datetime.now(UTC)
