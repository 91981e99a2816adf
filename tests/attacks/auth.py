"""Attacks on who may call what: credentials of every wrong kind on every route, brute force,
and one account reaching for another's objects (BOLA, OWASP API1/API2/API4/API5).

Each `async def …(api) -> str` runs against a live API through `probe.Api`, records what broke
in `api.trial`, and returns a one-line summary of what held.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from services.api.keys import new_secret
from tests.attacks.probe import (
    Api,
    Customer,
    bearer,
    caller_kind,
    ingest,
    ledger,
    new_customer,
    operations,
    problem_type,
    retry_after,
    short,
    submit,
    unique,
    wait_ledger,
)

MAX_GUESSES = 5000  # a limiter that has not answered 429 by then is no limiter
ACCOUNT_HEADER = "Creditledger-Account"  # the account a service token reads
CHALLENGE = 'Bearer realm="creditledger"'  # every 401's WWW-Authenticate
Case = tuple[str, dict[str, str], int, str]  # label, headers, status, problem slug ('' = any)


def fill(path: str, values: dict[str, str]) -> str:
    """The path with each `{name}` replaced by values[name] (or `x1`)."""
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "x1"), path)


def required_query(operation: dict[str, Any]) -> dict[str, str]:
    """A value for every required query parameter (only `cost` today), so auth is what fails."""
    return {
        p["name"]: "1"
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p["required"]
    }


async def mint_admin_token(api: Api, *scopes: str) -> tuple[str, str]:
    answer = await api.setup(
        "POST", "/v1/admin/tokens", json={"name": unique("atk"), "scopes": list(scopes)},
        headers=api.admin,
    )  # fmt: skip
    return answer.json()["tokenId"], answer.json()["secret"]


# --- credentials of every wrong kind ---------------------------------------------------------


async def _dead_keys(api: Api, victim: Customer) -> tuple[str, str]:
    """A revoked key and a rotated-out key (overlap 0) of the victim's account."""
    keys = f"/v1/admin/accounts/{victim.account_id}/keys"
    revoked = (await api.setup("POST", keys, headers=api.admin)).json()
    await api.setup("DELETE", f"{keys}/{revoked['keyId']}", headers=api.admin)
    rotated = (await api.setup("POST", keys, headers=api.admin)).json()
    await api.setup(
        "POST", f"{keys}/{rotated['keyId']}/rotate", json={"overlap_seconds": 0}, headers=api.admin
    )
    return revoked["secret"], rotated["secret"]


def _flip_checksum(secret: str) -> str:
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def _garbage_credentials(victim: Customer) -> list[tuple[str, dict[str, str]]]:
    """Credentials no route may accept: all answer 401 everywhere."""
    return [
        ("no credential", {}),
        ("bearer without a key", {"Authorization": "Bearer"}),
        ("basic auth", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("wrong checksum", bearer(_flip_checksum(victim.secret))),
        ("wrong checksum in x-api-key", {"x-api-key": _flip_checksum(victim.secret)}),
        ("unknown well-formed key", bearer(new_secret())),
        ("unknown cl_test_ key", bearer(new_secret("cl_test_"))),
        ("truncated key", bearer(victim.secret[:-1])),
        ("10 KB key", bearer("cl_live_" + "A" * 10_000)),
        ("sql in the key", bearer("cl_live_' OR '1'='1' --")),
        ("unknown admin-shaped token", bearer("cl_adm_" + secrets.token_urlsafe(32))),
    ]


# One route per caller kind gets every garbage credential; every route gets the wrong kinds.
GARBAGE_ROUTES = {"GET /v1/credits/ledger", "GET /v1/admin/tokens", "POST /v1/events"}


async def wrong_keys(api: Api) -> str:
    """Every operation of the document with credentials of the wrong kind (none, revoked,
    rotated out, the other side's, lacking the scope, two different ones at once, a service
    token naming no or an unknown account), and one operation per caller kind with every
    malformed one: each answers its exact 400/401/403/404 problem, every 401 with its
    `WWW-Authenticate` challenge."""
    victim = await new_customer(api, "atk_keys")
    cases = await _credential_cases(api, victim)
    values = {"account_id": victim.account_id, "key_id": victim.key_id}
    routes = 0
    for method, path, operation in await operations(api):
        kind = caller_kind(path)
        if kind == "public":
            continue
        routes += 1
        garbage = f"{method} {path}" in GARBAGE_ROUTES
        for label, headers, status, slug in cases[kind] + (cases["garbage-" + kind] * garbage):
            in_query = label == "key in the query string"
            query = required_query(operation)
            params = {**query, "api_key": victim.secret} if in_query else query
            body: dict[str, Any] | None = {} if method == "POST" else None
            what = f"{label}: {method} {path}"
            answer = await api.probe(
                method, fill(path, values), what=what, headers=headers, params=params, json=body
            )
            api.trial.check(answer.status_code == status, f"{what}: {short(answer)} not {status}")
            api.trial.check(problem_type(answer) == slug, f"{what}: not {slug}")
            challenge = answer.headers.get("www-authenticate", "")
            api.trial.check(
                answer.status_code != 401 or challenge.startswith(CHALLENGE),
                f"{what}: 401 without WWW-Authenticate {CHALLENGE}",
            )
            api.trial.check(victim.secret not in answer.text, f"{what}: the key echoed")
    still = await api.probe("GET", "/v1/credits/balance", headers=victim.headers)
    api.trial.check(still.status_code == 200, f"the victim's key stopped working {short(still)}")
    return f"{routes} routes refused every wrong credential with the exact 400/401/403/404"


async def _credential_cases(api: Api, victim: Customer) -> dict[str, list[Case]]:
    revoked, rotated_out = await _dead_keys(api, victim)
    other = await new_customer(api, "atk_other")
    events_only = (await mint_admin_token(api, "events:write"))[1]
    no_events = (await mint_admin_token(api, "commands:read"))[1]
    service = (await mint_admin_token(api, "credits:read"))[1]
    gone_id, gone_token = await mint_admin_token(api, "admin")
    await api.setup("DELETE", f"/v1/admin/tokens/{gone_id}", headers=api.admin)
    named = {ACCOUNT_HEADER: victim.account_id}
    # Two different credentials in one request: which was meant cannot be told, so 400.
    two_keys = {**victim.headers, "x-api-key": other.secret}
    key_and_token = {**api.admin, "x-api-key": victim.secret}
    garbage = [(label, h, 401, "unauthenticated") for label, h in _garbage_credentials(victim)]
    # On admin routes a well-formed customer key is refused by its form, unlooked-up: 403.
    customer_shaped = {"unknown well-formed key", "unknown cl_test_ key"}
    admin_garbage = [
        (label, h, 403, "forbidden") if label in customer_shaped else (label, h, status, slug)
        for label, h, status, slug in garbage
    ]
    nothing: Case = ("no credential", {}, 401, "unauthenticated")
    return {
        "customer": [
            nothing,
            # No route takes a key in the query: refused as an unknown parameter (never read).
            ("key in the query string", {}, 400, "unknown-parameter"),
            ("revoked key", bearer(revoked), 403, "key-revoked"),
            ("rotated-out key", bearer(rotated_out), 403, "key-expired"),
            # An admin token on a customer read is a service token: it needs credits:read
            # (403 otherwise) and Creditledger-Account (400 without, 404 for no such account).
            ("admin token without an account", api.admin, 400, "account-required"),
            (
                "admin token without credits:read",
                {**bearer(events_only), **named},
                403,
                "insufficient-scope",
            ),
            ("revoked admin token", {**bearer(gone_token), **named}, 403, "token-revoked"),
            (
                "service token, unknown account",
                {**bearer(service), ACCOUNT_HEADER: unique("no")},
                404,
                "not-found",
            ),
            (
                "service token, malformed account",
                {**bearer(service), ACCOUNT_HEADER: "a b"},
                400,
                "account-required",
            ),
            (
                "customer key naming another account",
                {**victim.headers, ACCOUNT_HEADER: other.account_id},
                404,
                "not-found",
            ),
            ("two different keys", two_keys, 400, "conflicting-credentials"),
            ("a key and the admin token", key_and_token, 400, "conflicting-credentials"),
        ],
        "admin": [
            nothing,
            ("customer key", victim.headers, 403, "forbidden"),
            ("customer key in x-api-key", {"x-api-key": victim.secret}, 403, "forbidden"),
            ("revoked admin token", bearer(gone_token), 403, "token-revoked"),
            ("token lacking the scope", bearer(events_only), 403, "insufficient-scope"),
            ("the admin token and a key", key_and_token, 400, "conflicting-credentials"),
        ],
        "ingest": [
            nothing,
            ("customer key", victim.headers, 403, "forbidden"),
            ("revoked admin token", bearer(gone_token), 403, "token-revoked"),
            ("token without events:write", bearer(no_events), 403, "insufficient-scope"),
            ("the admin token and a key", key_and_token, 400, "conflicting-credentials"),
        ],
        "garbage-customer": [
            *garbage,
            ("revoked key in x-api-key", {"x-api-key": revoked}, 403, "key-revoked"),
        ],
        "garbage-admin": [*admin_garbage, ("revoked key", bearer(revoked), 403, "forbidden")],
        "garbage-ingest": admin_garbage,
    }


# --- brute force ------------------------------------------------------------------------------


async def _until_429(api: Api, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    for _ in range(MAX_GUESSES):
        answer = await send()
        if answer.status_code == 429:
            return answer
    return answer


def _check_429(api: Api, answer: httpx.Response, what: str) -> int:
    """The limiter's answer: 429 rate-limited with an integer Retry-After; its seconds."""
    api.trial.check(answer.status_code == 429, f"{what}: no 429 after {MAX_GUESSES} tries")
    api.trial.check(problem_type(answer) == "rate-limited", f"{what}: {short(answer)}")
    wait_s = retry_after(answer)
    api.trial.check(wait_s is not None, f"{what}: 429 without an integer Retry-After")
    return wait_s or 1


async def _served_after(api: Api, wait_s: int, customer: Customer, what: str) -> None:
    """After exactly Retry-After seconds, the caller is served again."""
    await asyncio.sleep(wait_s)  # the server named the time; waiting it out is the test
    answer = await api.probe("GET", "/v1/credits/balance", headers=customer.headers,
                             rate_limited_ok=True)  # fmt: skip
    api.trial.check(
        answer.status_code == 200, f"{what}: not served after Retry-After {short(answer)}"
    )


async def brute_force(api: Api) -> str:
    """One key hammering, then guessing keys and admin tokens from one address (with forged
    X-Forwarded-For): each ends in 429 with Retry-After, which is honoured to the second."""
    victim, bystander = await new_customer(api, "atk_bf"), await new_customer(api, "atk_bf2")
    balance = "/v1/credits/balance"

    async def hammer() -> httpx.Response:
        return await api.probe("GET", balance, headers=victim.headers, rate_limited_ok=True)

    wait_s = _check_429(api, await _until_429(api, hammer), "one key hammering")
    other = await api.probe("GET", balance, headers=bystander.headers, rate_limited_ok=True)
    api.trial.check(other.status_code == 200, f"another account's key was limited {short(other)}")
    await _served_after(api, wait_s, victim, "the hammering key")

    forged = iter(range(1, 10**9))

    def spoofed() -> dict[str, str]:
        address = f"10.{next(forged) % 250}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
        return {"X-Forwarded-For": address, "X-Real-IP": address, "Forwarded": f"for={address}"}

    async def guess_key() -> httpx.Response:
        headers = {**bearer(new_secret()), **spoofed()}
        return await api.probe("GET", balance, headers=headers, rate_limited_ok=True)

    wait_s = _check_429(api, await _until_429(api, guess_key), "guessing customer keys")
    right = await api.probe("GET", balance, headers=victim.headers, rate_limited_ok=True)
    api.trial.check(
        right.status_code == 429, f"a right guess was confirmed while blocked {short(right)}"
    )
    await _served_after(api, wait_s, victim, "after key guessing")

    async def guess_token() -> httpx.Response:
        headers = {**bearer("cl_adm_" + secrets.token_urlsafe(32)), **spoofed()}
        return await api.probe("GET", "/v1/admin/tokens", headers=headers, rate_limited_ok=True)

    wait_s = _check_429(api, await _until_429(api, guess_token), "guessing admin tokens")
    await _served_after(api, wait_s, victim, "after admin token guessing")
    return "hammering and guessing (keys, admin tokens, forged X-Forwarded-For) all hit 429"


# --- BOLA: B reaches for A's objects ----------------------------------------------------------

A_FIGURES = (100_003, 70_009, 6_007, 4_001, 50_021)  # grant, gift, use, use, hold: all A's


async def _seed_a(api: Api, a: Customer) -> None:
    account = a.account_id
    await submit(api, account, "grants", {"amount": A_FIGURES[0], "bucket": "subscription",
                                          "name": "alpha-sub-name", "source": "alpha-invoice",
                                          "expires_at": "2099-06-01T00:00:00Z"})  # fmt: skip
    await submit(api, account, "grants", {"amount": A_FIGURES[1], "bucket": "gift",
                                          "metadata": {"alpha": "alpha-meta"}})  # fmt: skip
    await wait_ledger(api, a, 2)
    now = datetime.now(UTC).isoformat()  # after the grants' own (server-side) times
    await ingest(api, [
        {"request_id": f"{account}-req-{n}", "account_id": account, "key_id": a.key_id,
         "endpoint": "POST /v1/alpha/scan", "status_code": 200, "occurred_at": now,
         "credits": credits}
        for n, credits in enumerate(A_FIGURES[2:4])
    ])  # fmt: skip
    await wait_ledger(api, a, 4)
    await submit(api, account, "refunds", {"request_id": f"{account}-req-0", "reason": "alpha-why"})
    await submit(api, account, "holds", {"hold_id": f"{account}-hold", "amount": A_FIGURES[4],
                                         "expires_at": "2099-01-01T00:00:00Z"})  # fmt: skip
    await wait_ledger(api, a, 6)


async def _seed_b(api: Api, b: Customer) -> None:
    await submit(api, b.account_id, "grants", {"amount": 20, "source": "bravo-invoice"})
    await wait_ledger(api, b, 1)


async def _a_secrets(api: Api, a: Customer) -> tuple[set[str], dict[str, list[str]], list[str]]:
    """A's ids (that B must never see), A's object ids by path parameter, and A's cursors."""
    entries = await ledger(api, a)
    grants = (await api.setup("GET", "/v1/credits/grants", headers=a.headers)).json()["data"]
    page = await api.setup("GET", "/v1/credits/ledger", params={"limit": 1}, headers=a.headers)
    gpage = await api.setup("GET", "/v1/credits/grants", params={"limit": 1}, headers=a.headers)
    ids = {a.account_id, a.key_id, a.secret, "alpha-sub-name", "alpha-invoice", "alpha-meta",
           "alpha-why", "/v1/alpha/scan"}  # fmt: skip
    ids |= {e["id"] for e in entries} | {g["id"] for g in grants}
    objects = {"entry_id": [e["id"] for e in entries], "grant_id": [g["id"] for g in grants]}
    cursors = [page.json()["nextCursor"], gpage.json()["nextPage"]]
    return ids, objects, [c for c in cursors if c]


def numbers_in(value: Any) -> Iterator[int]:
    """Every integer in a JSON body (booleans aside): the figures one account must not see."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers_in(item)


def _leaks(answer: httpx.Response, ids: set[str]) -> list[str]:
    found = [i for i in ids if i in answer.text or i in str(answer.headers)]
    with contextlib.suppress(ValueError):
        found += [str(n) for n in set(numbers_in(answer.json())) & set(A_FIGURES)]
    return found


def _bola_requests(
    path: str, operation: dict[str, Any], objects: dict[str, list[str]], cursors: list[str],
    a_account: str,
) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:  # fmt: skip
    """(url, params, extra headers) for one customer operation, aimed at A's objects."""
    names = re.findall(r"\{([^}]+)\}", path)
    query = required_query(operation)
    if names:
        for name in names:
            for object_id in objects.get(name, ["x1"]):
                yield fill(path, {name: object_id}), query, {}
        return
    smuggled = {"account_id": a_account, "accountId": a_account}
    yield path, query, {}
    yield path, {**query, **smuggled}, {"X-Account-Id": a_account, ACCOUNT_HEADER: a_account}
    yield path, query, {ACCOUNT_HEADER: a_account}
    for cursor in cursors:
        yield path, {**query, "cursor": cursor, "next_page": cursor}, {}


async def bola(api: Api) -> str:
    """B walks every customer operation with A's ids, cursors and smuggled account ids; B's
    admin paths are walked with A's key ids. Nothing of A's may come back or change."""
    a, b = await new_customer(api, "atk_alpha"), await new_customer(api, "atk_bravo")
    await _seed_a(api, a)
    await _seed_b(api, b)
    ids, objects, cursors = await _a_secrets(api, a)
    for method, path, operation in await operations(api):
        if caller_kind(path) != "customer":
            continue
        for url, params, extra in _bola_requests(path, operation, objects, cursors, a.account_id):
            what = f"B: {method} {url} {params}"
            answer = await api.probe(method, url, what=what, params=params,
                                     headers={**b.headers, **extra})  # fmt: skip
            api.trial.check(answer.status_code in (200, 400, 402, 404), f"{what}: {short(answer)}")
            leaked = _leaks(answer, ids)
            api.trial.check(not leaked, f"{what}: A's {leaked} in B's answer")
    await _bola_admin_paths(api, a, b)
    mine = await ledger(api, b)
    api.trial.check({e["account_id"] for e in mine} == {b.account_id}, "B's own ledger is not B's")
    return f"B reached for {len(ids)} of A's ids on every customer route: none came back"


async def _bola_admin_paths(api: Api, a: Customer, b: Customer) -> None:
    """A's key through B's account paths: neither listed, rotated nor revoked."""
    b_keys = f"/v1/admin/accounts/{b.account_id}/keys"
    for method, url in (
        ("POST", f"{b_keys}/{a.key_id}/rotate"),
        ("DELETE", f"{b_keys}/{a.key_id}"),
    ):
        answer = await api.probe(
            method, url, headers=api.admin, json={} if method == "POST" else None
        )
        api.trial.check(answer.status_code == 404, f"{method} {url}: {short(answer)}")
    listed = await api.probe("GET", b_keys, headers=api.admin)
    api.trial.check(a.key_id not in listed.text, "A's key listed under B")
    still = await api.probe("GET", "/v1/credits/balance", headers=a.headers)
    api.trial.check(still.status_code == 200, f"A's key harmed through B's paths {short(still)}")
