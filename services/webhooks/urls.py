"""Which webhook URLs may be called: http(s) only, and (unless `webhooks_allow_private`) only
public addresses: private, loopback, link-local, shared, multicast and reserved addresses are
refused, by literal at registration and by every address a name resolves to, at registration
and again at each delivery (the worker then connects to the address it checked). IPv6 ranges
that embed or translate to an IPv4 address (NAT64, 6to4, Teredo, IPv4-compatible and
-translated) and the deprecated site-local range are refused outright: `is_global` counts them
as public, yet a gateway or the host's own stack may carry them to a private IPv4 address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_S = 5.0
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Never called, whatever `is_global` says (IPv4-mapped ::ffff:0:0/96 is unwrapped instead).
REFUSED_IPV6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "64:ff9b::/96",  # NAT64, well-known prefix (RFC 6052)
        "64:ff9b:1::/48",  # NAT64, local-use prefix (RFC 8215)
        "2002::/16",  # 6to4 (RFC 3056): the IPv4 address is bits 16-48
        "2001::/32",  # Teredo (RFC 4380)
        "::/96",  # IPv4-compatible (deprecated), and :: and ::1
        "::ffff:0:0:0/96",  # IPv4-translated (RFC 2765)
        "fec0::/10",  # site-local (deprecated by RFC 3879, still routed on some networks)
    )
)


class RefusedUrl(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (a name or an address, without brackets)
    port: int


def parse_target(url: str) -> Target:
    if len(url) > MAX_URL_CHARS:
        raise RefusedUrl(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedUrl(f"the URL is not valid: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("only http and https URLs are allowed")
    if not parts.hostname:
        raise RefusedUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("the URL may not carry credentials (use the signature instead)")
    _check_host(url, parts.hostname)
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port)


def _check_host(url: str, host: str) -> None:
    """What the sender's HTTP client and resolver will refuse, refused here first: a name that
    is no valid IDNA name (a soft hyphen, a label over 63 characters) cannot be delivered to."""
    try:
        httpx.URL(url)
        if literal_address(host) is None:
            host.encode("idna")
    except (httpx.InvalidURL, UnicodeError) as error:
        raise RefusedUrl(f"the URL's host is not valid: {error}") from error


def literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if any(address in network for network in REFUSED_IPV6):
            return False
    return address.is_global and not address.is_multicast


def refuse_private(addresses: list[IpAddress]) -> None:
    for address in addresses:
        if not is_public(address):
            raise RefusedUrl(
                f"{address} is a private, loopback or link-local address "
                "(set CREDITLEDGER_WEBHOOKS_ALLOW_PRIVATE=true to allow it)"
            )


async def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address `host` resolves to (one, for an address literal)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError) as error:
        # UnicodeError: the name is no valid IDNA name (a label over 63 characters, say).
        raise RefusedUrl(f"{host} could not be resolved ({error})") from error
    found = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not found:
        raise RefusedUrl(f"{host} resolves to no address")
    return list(dict.fromkeys(found))


async def check_registration(url: str, allow_private: bool) -> None:
    """At registration: the scheme and host, and with private addresses refused, the address
    literal or what the name resolves to now (a name that does not resolve yet is accepted: each
    delivery resolves it again and refuses what it must)."""
    target = parse_target(url)
    if allow_private:
        return
    if target.host.lower() in (
        "localhost",
        "localhost.localdomain",
    ) or target.host.lower().endswith(".localhost"):
        raise RefusedUrl(f"{target.host} is a loopback name")
    literal = literal_address(target.host)
    if literal is not None:
        refuse_private([literal])
        return
    try:
        addresses = await resolve(target.host, target.port)
    except RefusedUrl:
        return
    refuse_private(addresses)
