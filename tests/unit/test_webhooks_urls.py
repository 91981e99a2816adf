"""Which addresses and hosts a webhook may reach: IPv6 forms that carry or translate to an IPv4
address (NAT64, 6to4, Teredo, IPv4-compatible, -translated) and site-local are refused although
Python's `is_global` counts them public; hosts no HTTP client or resolver can encode are refused
at registration (RefusedUrl, not a UnicodeError) and are a refused try at delivery."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import httpx
import pytest

from services.webhooks import sender
from services.webhooks.store import Delivery, Endpoint
from services.webhooks.urls import RefusedUrl, check_registration, is_public, resolve

# Each of these is_global on Python 3.11, and each may reach a private IPv4 address.
HIDDEN_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:7f00:1",  # IPv4-translated
    "fec0::1",  # site-local
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
]
PUBLIC = ["93.184.215.14", "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8"]
LONG_LABEL_URL = "https://" + "a" * 64 + ".example.com/hooks"
SOFT_HYPHEN_URL = "https://\u00adfoo.com/"


@pytest.mark.parametrize("address", HIDDEN_PRIVATE)
def test_ipv6_forms_of_private_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", HIDDEN_PRIVATE)
async def test_they_are_refused_at_registration(address: str) -> None:
    with pytest.raises(RefusedUrl, match="private, loopback or link-local"):
        await check_registration(f"http://[{address}]:8080/hooks", allow_private=False)


@pytest.mark.parametrize("url", [LONG_LABEL_URL, SOFT_HYPHEN_URL])
async def test_hosts_no_client_can_encode_are_refused_at_registration(url: str) -> None:
    with pytest.raises(RefusedUrl, match="host is not valid"):
        await check_registration(url, allow_private=False)
    with pytest.raises(RefusedUrl, match="host is not valid"):
        await check_registration(url, allow_private=True)


async def test_resolving_a_name_with_a_label_too_long_is_a_refusal() -> None:
    with pytest.raises(RefusedUrl, match="could not be resolved"):
        await resolve("a" * 64 + ".example.com", 443)


def _delivery(url: str) -> Delivery:
    endpoint = Endpoint("we_1", url, frozenset(), "whsec_s", datetime.now(UTC))
    return Delivery("acct_1", "acct_1:1:depleted", endpoint, b"{}")


@pytest.mark.parametrize("allow_private", [False, True])
async def test_an_url_the_client_cannot_parse_is_a_refused_try(allow_private: bool) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        answer = await sender.send(client, _delivery(SOFT_HYPHEN_URL), allow_private, 2)
    assert answer.status_code is None and not answer.delivered
    assert answer.error is not None and answer.error.startswith("refused: ")
    assert requests == []


async def test_an_ipv6_form_of_a_private_address_is_refused_at_delivery() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        answer = await sender.send(client, _delivery("http://[64:ff9b::a9fe:a9fe]/"), False, 2)
    assert answer.error is not None and "64:ff9b::a9fe:a9fe" in answer.error
    assert requests == []
