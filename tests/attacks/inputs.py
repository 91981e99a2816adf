"""Attacks through what a request carries: extra fields in admin bodies (mass assignment, OWASP
API3), huge pages, bodies and ranges (API4), Idempotency-Key misuse, error provocation (API8),
and routes beyond the OpenAPI document (API9).

Each `async def …(api) -> str` runs against a live API through `probe.Api` (see probe.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.attacks.auth import fill, required_query
from tests.attacks.probe import (
    Api,
    Customer,
    caller_kind,
    ledger,
    new_customer,
    operations,
    problem_type,
    short,
    submit,
    unique,
    wait_applied,
    wait_ledger,
)

EXTRA_FIELDS: list[dict[str, Any]] = [
    {"is_admin": True}, {"role": "admin"}, {"balance": 10**9}, {"tenant": "*"},
    {"__proto__": {"admin": True}}, {"constructor": {"prototype": {"admin": True}}},
    {"created_at": "2000-01-01T00:00:00Z"}, {"seq": 1}, {"balance_after": 10**9},
]  # fmt: skip


def _expect_422(api: Api, answer: httpx.Response, what: str) -> None:
    api.trial.check(answer.status_code == 422, f"{what}: {short(answer)} not 422")
    if answer.status_code == 422:
        errors = answer.json().get("errors") or []
        api.trial.check(bool(errors), f"{what}: 422 names no field")


# --- mass assignment --------------------------------------------------------------------------


async def _command_bodies(api: Api, target: Customer, other: Customer) -> list[tuple[str, Any]]:
    """(path under the account, body) for each command route, each with a field it must not take."""
    server_fields: list[dict[str, Any]] = [
                     {"account_id": other.account_id}, {"command_id": unique("mine")},
                     {"type": "adjustment"}, {"status": "applied"}, {"delta": 10**9}]  # fmt: skip
    grant: dict[str, Any] = {"amount": 5, "bucket": "gift"}
    bodies: list[tuple[str, Any]] = [("grants", {**grant, **extra}) for extra in EXTRA_FIELDS]
    bodies += [("grants", {**grant, **extra}) for extra in server_fields]
    bodies += [
        ("adjustments", {"amount": 1, "reason": "r", "approved": True}),
        ("refunds", {"request_id": "r1", "amount": 1, "force": True}),
        ("holds", {"hold_id": "h1", "amount": 1, "expires_at": "2099-01-01T00:00:00Z",
                   "captured": True}),
        ("holds/h1/capture", {"hold_id": "another-hold", "request_id": "r9", "endpoint": "x"}),
        ("holds/h1/release", {"hold_id": "h1", "owner": other.account_id}),
        ("void", {"grant_id": "g1", "void_all_accounts": True}),
        ("settings", {"credit_limit": 5, "auto_reload": {"threshold": 1, "amount": 1,
                                                         "max_per_day": 1, "unlimited": True}}),
        ("settings", {"low_balance_threshold": 1, "credit_limit_override": 10**12}),
    ]  # fmt: skip
    return bodies


async def mass_assignment(api: Api) -> str:
    """Every admin body with fields it does not declare (privileges, server-set ids, another
    account): 422 naming the field, and nothing created, issued or published."""
    target, other = await new_customer(api, "atk_mass"), await new_customer(api, "atk_mass2")
    base = f"/v1/admin/accounts/{target.account_id}"
    for path, body in await _command_bodies(api, target, other):
        answer = await api.probe("POST", f"{base}/{path}", json=body, headers=api.admin)
        _expect_422(api, answer, f"POST {path} {list(body)}")
    await _accounts_keys_tokens(api, target)
    # Nothing above was published: the first entry of the target's ledger is this sentinel.
    sentinel = await submit(api, target.account_id, "adjustments", {"amount": 7, "reason": "s"})
    await wait_applied(api, target.account_id, sentinel)
    entries = await ledger(api, target)
    published = [(e["reason"], e["delta"]) for e in entries]
    api.trial.check(published == [("adjustment", 7)], f"a refused body was published: {published}")
    others = await ledger(api, other)
    api.trial.check(not others, f"the other account was written to: {others}")
    return "every admin body refused undeclared fields with 422; nothing was published"


async def _accounts_keys_tokens(api: Api, target: Customer) -> None:
    keys = f"/v1/admin/accounts/{target.account_id}/keys"
    before = (await api.setup("GET", keys, headers=api.admin)).json()["keys"]
    planted = "cl_live_" + "A" * 36
    for extra in [*EXTRA_FIELDS, {"secret": planted}, {"key_id": "key_mine"},
                  {"account_id": "someone_else"}, {"scopes": ["admin"]}]:  # fmt: skip
        _expect_422(
            api, await api.probe("POST", keys, json=extra, headers=api.admin), f"key {extra}"
        )
        rotate = f"{keys}/{target.key_id}/rotate"
        answer = await api.probe("POST", rotate, json={"overlap_seconds": 0, **extra},
                                 headers=api.admin)  # fmt: skip
        _expect_422(api, answer, f"rotate {extra}")
    after = (await api.setup("GET", keys, headers=api.admin)).json()["keys"]
    api.trial.check(after == before, "a key was issued, rotated or changed by a refused body")
    new_account = unique("atk_mass_new")
    for extra in EXTRA_FIELDS:
        body = {"account_id": new_account, "name": "n", **extra}
        answer = await api.probe("POST", "/v1/admin/accounts", json=body, headers=api.admin)
        _expect_422(api, answer, f"account {extra}")
    exists = await api.probe("GET", f"/v1/admin/accounts/{new_account}/keys", headers=api.admin)
    api.trial.check(exists.status_code == 404, f"a refused account exists: {short(exists)}")
    await _tokens(api)


async def _tokens(api: Api) -> None:
    name, planted = unique("atk_tok"), "cl_adm_" + "planted" * 6
    for extra in [*EXTRA_FIELDS, {"secret": planted}, {"token_id": "adm_mine"},
                  {"secret_sha256": "0" * 64}, {"revoked_at": None}]:  # fmt: skip
        body = {"name": name, "scopes": ["commands:read"], **extra}
        answer = await api.probe("POST", "/v1/admin/tokens", json=body, headers=api.admin)
        _expect_422(api, answer, f"token {extra}")
    for scopes in (["ADMIN"], ["commands:read", "root"], ["*"]):
        answer = await api.probe("POST", "/v1/admin/tokens", json={"name": name, "scopes": scopes},
                                 headers=api.admin)  # fmt: skip
        _expect_422(api, answer, f"token scopes {scopes}")
    listed = await api.setup("GET", "/v1/admin/tokens", headers=api.admin)
    api.trial.check(name not in listed.text, "a refused admin token was minted")
    planted_try = await api.probe(
        "GET", "/v1/admin/tokens", headers={"Authorization": f"Bearer {planted}"}
    )
    api.trial.check(planted_try.status_code == 401, f"a planted secret works {short(planted_try)}")


# --- huge pages, ranges and bodies ------------------------------------------------------------

HUGE_READS: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("/v1/credits/ledger", {"limit": 501}, (422,)),
    ("/v1/credits/ledger", {"limit": 10**30}, (422,)),
    ("/v1/credits/ledger", {"limit": -1}, (422,)),
    ("/v1/credits/ledger", {"page": 10**12}, (422,)),
    ("/v1/credits/ledger", {"page": 2**63}, (422,)),
    ("/v1/credits/ledger", {"offset": 10**9}, (422,)),
    ("/v1/credits/ledger", {"offset": -5}, (422,)),
    ("/v1/credits/ledger", {"from": "0001-01-01", "to": "9999-12-31"}, (422,)),
    ("/v1/credits/ledger", {"reason": "consume," * 2000}, (422,)),
    ("/v1/credits/ledger", {"expand": "request," * 500}, (422,)),
    ("/v1/credits/ledger", {"cursor": "A" * 30_000}, (400, 414, 422, 431)),
    ("/v1/credits/ledger", {"min_seq": 10**40}, (422,)),
    ("/v1/credits/grants", {"limit": 10**6}, (422,)),
    ("/v1/credits/grants", {"next_page": "e" * 600}, (400, 422)),
    ("/v1/credits/activity", {"from": "2000-01-01", "to": "2026-01-01"}, (422,)),
    ("/v1/credits/activity", {"from": "0001-01-01T00:00:00Z"}, (422,)),
    ("/v1/usage", {"from": "1970-01-01", "to": "9999-12-31", "group_by": "day"}, (422,)),
    ("/v1/usage", {"group_by": "endpoint" * 100}, (422,)),
    ("/v1/credits/check", {"cost": 10**13}, (422,)),
    ("/v1/credits/check", {"cost": "1e309"}, (422,)),
    ("/v1/account/summary", {"period": "x" * 10_000}, (422,)),
    ("/v1/credits/grants/" + "g" * 10_000, {}, (404, 414, 422)),
    ("/v1/credits/ledger/" + "e" * 10_000, {}, (404, 414, 422)),
]


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _huge_bodies(limit: int) -> list[tuple[str, bytes | None, dict[str, str], tuple[int, ...]]]:
    """(label, body, headers, allowed statuses) for a command route."""
    big = json.dumps({"amount": 1, "name": "x" * (limit + 10)}).encode()
    many = json.dumps({"amount": 1, "metadata": {f"k{i}": "v" for i in range(100_000)}}).encode()
    return [
        ("body past the cap", big, {}, (413,)),
        ("deeply nested JSON", _deep(50_000), {}, (400, 422)),
        ("nested arrays", b"[" * 100_000 + b"]" * 100_000, {}, (400, 413, 422)),
        ("100k metadata keys", many, {}, (413, 422)),
        ("a 5000-digit amount", b'{"amount": ' + b"9" * 5000 + b"}", {}, (400, 422)),
        ("amount 1e400", b'{"amount": 1e400}', {}, (400, 422)),
        ("invalid UTF-8", b'{"amount": 1, "name": "\xff\xfe"}', {}, (400, 422)),
        ("not an object", b"[1, 2, 3]", {}, (400, 422)),
        ("a bare string", b'"grant"', {}, (400, 422)),
        ("NaN", b'{"amount": NaN}', {}, (400, 422)),
        ("Content-Length not a number", b"{}", {"Content-Length": "abc"}, (400, 422)),
    ]


async def _chunked(limit: int) -> Any:
    chunk = b" " * 65_536
    for _ in range(limit // len(chunk) + 2):
        yield chunk


async def huge_inputs(api: Api) -> str:
    """Pages, ranges, ids, bodies, batches and headers far past every bound: each a 4xx."""
    who = await new_customer(api, "atk_huge")
    for path, params, allowed in HUGE_READS:
        what = f"GET {path[:60]} {str(params)[:60]}"
        answer = await api.probe("GET", path, params=params, headers=who.headers, what=what)
        api.trial.check(answer.status_code in allowed, f"{what}: {short(answer)}")
    grants = f"/v1/admin/accounts/{who.account_id}/grants"
    limit = 1_048_576 * 2  # past the default cap (1 MiB); a smaller cap refuses it too
    for label, body, headers, allowed in _huge_bodies(limit):
        answer = await _raw_post(api, grants, body, headers, label)
        api.trial.check(answer.status_code in allowed, f"{label}: {short(answer)}")
    streamed = await api.probe("POST", grants, content=_chunked(limit), headers=api.admin,
                               what="chunked body past the cap")  # fmt: skip
    api.trial.check(streamed.status_code == 413, f"chunked body: {short(streamed)}")
    await _huge_batches(api, who)
    long_header = {**who.headers, "X-Padding": "p" * 60_000}
    padded = await api.probe("GET", "/v1/credits/balance", headers=long_header,
                             what="60 KB header", http_layer_ok=True)  # fmt: skip
    api.trial.check(
        400 <= padded.status_code < 500 or padded.is_success, f"header: {short(padded)}"
    )
    nothing = await ledger(api, who)
    api.trial.check(not nothing, f"an oversized request was applied: {nothing}")
    return f"{api.trial.tried} oversized requests: all bounded with a 4xx"


async def _raw_post(
    api: Api, path: str, body: bytes | None, headers: dict[str, str], what: str
) -> httpx.Response:
    sent = {**api.admin, "Content-Type": "application/json", **headers}
    if "Content-Length" in headers:  # httpx would correct a lying length: send it by hand
        return await _lying_length(api, path, body or b"", sent, what)
    return await api.probe("POST", path, content=body, headers=sent, what=what)


async def _lying_length(
    api: Api, path: str, body: bytes, headers: dict[str, str], what: str
) -> httpx.Response:
    """A request with a Content-Length httpx would not send, over a plain socket."""
    url = httpx.URL(str(api.http.base_url)).join(path)
    lines = [f"POST {url.raw_path.decode()} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()] + ["Connection: close"]
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    answer = httpx.Response(status, content=payload)
    api.trial.tried += 1
    api.trial.check(status < 500, f"{what}: a server error {status}")
    return answer


async def _huge_batches(api: Api, who: Customer) -> None:
    event = {"account_id": who.account_id, "endpoint": "POST /x", "status_code": 200,
             "occurred_at": "2026-01-01T00:00:00Z", "credits": 1}  # fmt: skip
    too_many = [{**event, "request_id": f"r{i}"} for i in range(1001)]
    one_bad = [{**event, "request_id": f"r{i}"} for i in range(999)] + [{**event, "credits": -1}]
    for label, events in (("1001 events", too_many), ("999 good, 1 bad", one_bad)):
        answer = await api.probe("POST", "/v1/events", json={"events": events},
                                 headers=api.admin, what=label)  # fmt: skip
        api.trial.check(answer.status_code == 422, f"{label}: {short(answer)}")
    empty = await api.probe("POST", "/v1/events", json={"events": []}, headers=api.admin)
    api.trial.check(empty.status_code == 422, f"no events: {short(empty)}")


# --- Idempotency-Key misuse -------------------------------------------------------------------


async def idempotency_misuse(api: Api) -> str:
    """Replays, other bodies, other routes, another account and a stampede under one key."""
    a, b = await new_customer(api, "atk_idem"), await new_customer(api, "atk_idem2")
    key = unique("idem")
    grants = f"/v1/admin/accounts/{a.account_id}/grants"

    async def post(path: str, body: Any, idem: str = key) -> httpx.Response:
        headers = {**api.admin, "Idempotency-Key": idem}
        return await api.probe("POST", path, json=body, headers=headers, what=f"{path} {idem[:20]}")

    first = await post(grants, {"amount": 11})
    api.trial.check(first.status_code == 202, f"first: {short(first)}")
    again = await post(grants, {"amount": 11})
    api.trial.check(again.content == first.content and again.status_code == first.status_code,
                    f"replay differs: {short(again)}")  # fmt: skip
    api.trial.check(again.headers.get("idempotent-replayed") == "true", "replay not marked")
    adjustments = f"/v1/admin/accounts/{a.account_id}/adjustments"
    for path, body in ((grants, {"amount": 12}), (grants, {"amount": 11, "name": "x"}),
                       (adjustments, {"amount": 11})):  # fmt: skip
        reused = await post(path, body)
        api.trial.check(reused.status_code == 409, f"reused key {path} {body}: {short(reused)}")
        api.trial.check(problem_type(reused) == "idempotency-key-reused", f"{short(reused)}")
    theirs = await post(f"/v1/admin/accounts/{b.account_id}/grants", {"amount": 11})
    api.trial.check(theirs.status_code == 202 and theirs.content != first.content,
                    f"B got A's answer for the same key: {short(theirs)}")  # fmt: skip
    await _stampede(api, a, grants)
    await _bad_keys(api, grants)
    entries = await wait_ledger(api, a, 2)
    granted = sorted(e["delta"] for e in entries)
    api.trial.check(granted == [11, 13], f"A's grants are {granted}, not one each of 11 and 13")
    return "replays, conflicts, another account and a stampede: each key applied once"


async def _stampede(api: Api, a: Customer, grants: str) -> None:
    """20 concurrent requests with one new key: one command id, applied once."""
    key = unique("stampede")
    headers = {**api.admin, "Idempotency-Key": key}
    answers = await asyncio.gather(*(
        api.probe("POST", grants, json={"amount": 13}, headers=headers, what="stampede")
        for _ in range(20)
    ))  # fmt: skip
    ids = {r.json()["commandId"] for r in answers if r.status_code == 202}
    statuses = {r.status_code for r in answers}
    api.trial.check(len(ids) == 1 and statuses <= {202, 409}, f"stampede: {statuses} {ids}")
    if ids:
        await wait_applied(api, a.account_id, ids.pop())


async def _bad_keys(api: Api, grants: str) -> None:
    for label, key in (("256 characters", "k" * 256), ("10 KB", "k" * 10_000),
                       ("a control character", "abc\x7fdef"), ("a tab", "a\tb")):  # fmt: skip
        headers = {**api.admin, "Idempotency-Key": key}
        answer = await api.probe("POST", grants, json={"amount": 1}, headers=headers, what=label,
                                 http_layer_ok=True)  # fmt: skip
        api.trial.check(answer.status_code in (400, 422, 431), f"key of {label}: {short(answer)}")


# --- errors and routes ------------------------------------------------------------------------

UNDOCUMENTED = [
    "/admin", "/v1/admin", "/v1/admin/accounts/x1", "/v1/credits", "/v1/debug", "/debug",
    "/.env", "/.git/config", "/internal", "/v2/credits/balance", "/v1/credits/balance/../../etc",
    "/v1/admin/accounts/..%2F..%2Fetc%2Fpasswd/keys", "/openapi.yaml", "/server-status",
    "/dashboard/static/..%2F..%2Fapp.py", "/dashboard/static/app.py",
]  # fmt: skip
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


async def routes_match_the_document(api: Api) -> str:
    """Served routes are the document's: every documented operation answers one of its
    documented statuses, other methods 405 with Allow, undocumented paths 404."""
    who = await new_customer(api, "atk_routes")
    ops = await operations(api)
    documented: dict[str, set[str]] = {}
    for method, path, operation in ops:
        documented.setdefault(path, set()).add(method)
        await _documented_status(api, who, method, path, operation)
    for path, methods in documented.items():
        for method in set(METHODS) - methods:
            url = fill(path, {"account_id": who.account_id})
            answer = await api.probe(method, url, headers=api.admin, what=f"{method} {path}")
            allow = {m.strip() for m in answer.headers.get("allow", "").split(",")}
            api.trial.check(answer.status_code == 405, f"{method} {path}: {short(answer)}")
            api.trial.check(
                methods <= allow <= methods | {"HEAD"}, f"{method} {path}: Allow {allow}"
            )
    for path in UNDOCUMENTED:
        answer = await api.probe("GET", path, headers=api.admin, what=f"GET {path}")
        api.trial.check(answer.status_code == 404, f"undocumented {path}: {short(answer)}")
    return f"{len(ops)} documented operations served as documented; nothing else is"


async def _documented_status(
    api: Api, who: Customer, method: str, path: str, operation: dict[str, Any]
) -> None:
    headers = {"customer": who.headers, "public": {}}.get(caller_kind(path), api.admin)
    url = fill(path, {"account_id": who.account_id, "key_id": who.key_id})
    body: dict[str, Any] | None = {} if method == "POST" else None
    answer = await api.probe(method, url, headers=headers, json=body,
                             params=required_query(operation), what=f"{method} {path}")  # fmt: skip
    statuses = set(operation["responses"])
    api.trial.check(
        str(answer.status_code) in statuses, f"{method} {path}: undocumented {short(answer)}"
    )


async def error_bodies(api: Api) -> str:
    """Errors provoked every way: problem+json with a stable type, never internals."""
    who = await new_customer(api, "atk_errors")
    grants = f"/v1/admin/accounts/{who.account_id}/grants"
    provoked: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/nope", {}),
        ("GET", "/v1/credits/balance", {"headers": {"Accept": "text/html"}}),
        ("DELETE", "/v1/credits/balance", {"headers": who.headers}),
        ("POST", grants, {"content": b"{", "headers": api.admin}),
        ("POST", grants, {"content": b'{"amount": "1; DROP TABLE ledger_entries"}',
                          "headers": api.admin}),
        ("POST", grants, {"content": b'{"amount": 1, "expires_at": "yesterday"}',
                          "headers": api.admin}),
        ("POST", grants, {"content": b"\x00\x01\x02", "headers": api.admin}),
        ("POST", "/v1/events", {"content": b'{"events": [{"account_id": "\'; --"}]}',
                                "headers": api.admin}),
        ("GET", "/v1/credits/ledger", {"params": {"cursor": "eyJrIjoiJyBPUiAxPTEifQ"},
                                       "headers": who.headers}),
        ("GET", "/v1/credits/ledger", {"params": {"from": "2026-13-45"}, "headers": who.headers}),
        ("GET", "/v1/credits/ledger/' OR '1'='1", {"headers": who.headers}),
        ("GET", "/v1/credits/grants/%27%3B%20SELECT%20pg_sleep(5)%3B--", {"headers": who.headers}),
        ("GET", "/v1/admin/commands/x1", {"params": {"account_id": "' OR 1=1"},
                                          "headers": api.admin}),
        ("GET", "/v1/admin/accounts/%E2%80%AE/keys", {"headers": api.admin}),
        ("POST", "/v1/admin/accounts", {"json": {"account_id": "a;b", "name": "x"},
                                        "headers": api.admin}),
        # Unix timestamps where ISO-8601 is due: pydantic alone would read them as 1970.
        ("POST", grants, {"json": {"amount": 1, "occurred_at": 0}, "headers": api.admin}),
        ("POST", grants, {"json": {"amount": 1, "expires_at": "0"}, "headers": api.admin}),
        ("POST", f"/v1/admin/accounts/{who.account_id}/keys",
         {"json": {"expires_at": 1e9}, "headers": api.admin}),
        ("POST", "/v1/events", {"json": {"request_id": "t0", "account_id": who.account_id,
                                         "endpoint": "x", "status_code": 200, "occurred_at": 0},
                                "headers": api.admin}),
    ]  # fmt: skip
    for method, path, kwargs in provoked:
        answer = await api.probe(method, path, what=f"{method} {path}", **kwargs)
        api.trial.check(answer.status_code >= 400, f"{method} {path}: accepted {short(answer)}")
    nothing = await ledger(api, who)
    api.trial.check(not nothing, f"a refused request was applied: {nothing}")
    return f"{len(provoked)} provoked errors: all problem+json, none naming internals"


# --- unknown and repeated query parameters ---------------------------------------------------

# Misspelt filters that once returned unfiltered data as if they had applied (issue 15).
MISSPELT: list[tuple[str, dict[str, str]]] = [
    ("/v1/credits/ledger", {"type": "debit"}),
    ("/v1/credits/ledger", {"reasons": "consume"}),
    ("/v1/credits/grants", {"credit_id": "g1"}),
    ("/v1/usage", {"period": "daily"}),
    ("/v1/credits/balance", {"asof": "2026-01-01T00:00:00Z"}),  # the fast path falls through
    ("/v1/credits/check", {"cost": "1", "endpont": "POST /v1/scan"}),
]
REPEATED: list[tuple[str, str]] = [
    ("/v1/credits/ledger", "limit=1&limit=500"),
    ("/v1/credits/check", "cost=1&cost=1000000"),
    ("/v1/usage", "group_by=day&group_by=month"),
]
UNKNOWN = "no_such_parameter"


def _expect_400(api: Api, answer: httpx.Response, kind: str, names: list[str], what: str) -> None:
    api.trial.check(answer.status_code == 400, f"{what}: {short(answer)} not 400")
    if answer.status_code == 400:
        body = answer.json()
        api.trial.check(problem_type(answer) == kind, f"{what}: type {body.get('type')!r}")
        api.trial.check(body.get("parameters") == names, f"{what}: parameters {body}")


async def unknown_parameters(api: Api) -> str:
    """A query parameter an operation does not take answers 400 `unknown-parameter` naming it,
    on every documented operation, whoever asks (as Stripe does: a misspelt filter must not
    answer unfiltered data); a single-valued one given twice answers 400 `repeated-parameter`."""
    who = await new_customer(api, "atk_params")
    ops = await operations(api)
    for method, path, operation in ops:
        if path.startswith("/dashboard"):  # a page opened from links: exempt (strict_query.py)
            continue
        headers = {"customer": who.headers, "public": {}}.get(caller_kind(path), api.admin)
        url = fill(path, {"account_id": who.account_id, "key_id": who.key_id})
        params = {**required_query(operation), UNKNOWN: "1"}
        body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
        answer = await api.probe(method, url, headers=headers, params=params, json=body,
                                 what=f"{method} {path}?{UNKNOWN}")  # fmt: skip
        _expect_400(api, answer, "unknown-parameter", [UNKNOWN], f"{method} {path}?{UNKNOWN}")
    for path, params in MISSPELT:
        answer = await api.probe("GET", path, headers=who.headers, params=params)
        names = [n for n in params if n != "cost"]
        _expect_400(api, answer, "unknown-parameter", names, f"GET {path}?{params}")
    for path, query in REPEATED:
        answer = await api.probe("GET", f"{path}?{query}", headers=who.headers)
        name = query.split("=", 1)[0]
        _expect_400(api, answer, "repeated-parameter", [name], f"GET {path}?{query}")
    return (
        f"{len(ops)} operations, {len(MISSPELT)} misspelt filters and {len(REPEATED)} "
        "repeated parameters: all 400 naming the parameter"
    )
