"""One try of one delivery: resolve (and, unless private addresses are allowed, check and pin)
the endpoint's address, POST the stored body signed now, never follow a redirect, and bound the
whole try by `webhook_timeout_s`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from services.webhooks.signing import SIGNATURE_HEADER, signature_header
from services.webhooks.store import Delivery
from services.webhooks.urls import RefusedUrl, parse_target, refuse_private, resolve

USER_AGENT = "creditledger-webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no answer (refused, timed out, connection failed)
    error: str | None
    latency_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_client(timeout_s: float) -> httpx.AsyncClient:
    # No proxies or netrc from the environment, no redirects: the request goes where the
    # checked address is, and only there.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )  # fmt: skip


async def send(
    client: httpx.AsyncClient, delivery: Delivery, allow_private: bool, timeout_s: float
) -> Answer:
    started = time.monotonic()
    try:
        status_code = await _post(client, delivery, allow_private, timeout_s)
    except (RefusedUrl, httpx.InvalidURL, UnicodeError) as refused:
        # InvalidURL, UnicodeError: a host no client or resolver can encode (registered before
        # registration checked that): a refused try like any other, retried until it gives up.
        return Answer(None, _text(f"refused: {refused}"), _ms_since(started))
    except (TimeoutError, httpx.TimeoutException):
        return Answer(None, f"no answer within {timeout_s:g} s", _ms_since(started))
    except httpx.HTTPError as error:
        return Answer(None, _text(f"{type(error).__name__}: {error}"), _ms_since(started))
    latency_ms = _ms_since(started)
    if 200 <= status_code < 300:
        return Answer(status_code, None, latency_ms)
    redirect = " (redirects are not followed)" if 300 <= status_code < 400 else ""
    return Answer(status_code, f"HTTP {status_code}{redirect}", latency_ms)


async def _post(
    client: httpx.AsyncClient, delivery: Delivery, allow_private: bool, timeout_s: float
) -> int:
    async with asyncio.timeout(timeout_s):
        url, extensions, host_header = await _pinned(delivery.endpoint.url, allow_private)
        timestamp_s = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(
                delivery.endpoint.secret, timestamp_s, delivery.body
            ),
            "Creditledger-Event-Id": delivery.event_id,
        }
        if host_header is not None:
            headers["Host"] = host_header
        request = client.build_request(
            "POST", url, content=delivery.body, headers=headers, extensions=extensions
        )
        # The answer's body is never read: its status is all a try needs.
        response = await client.send(request, stream=True)
        await response.aclose()
        return response.status_code


async def _pinned(url: str, allow_private: bool) -> tuple[httpx.URL, dict[str, str], str | None]:
    """The URL to connect to: as given when private addresses are allowed; else with its host
    replaced by the public address it resolved to (Host header and TLS name stay the name's),
    so a name cannot resolve to one address when checked and another when connected."""
    parsed = httpx.URL(url)
    if allow_private:
        return parsed, {}, None
    target = parse_target(url)
    addresses = await resolve(target.host, target.port)
    refuse_private(addresses)
    address = addresses[0]
    if str(address) == target.host:
        return parsed, {}, None
    host_header = target.host if parsed.port is None else f"{target.host}:{parsed.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return parsed.copy_with(host=str(address)), extensions, host_header


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _text(error: str) -> str:
    return error[:MAX_ERROR_CHARS]
