"""What every attack shares: a tally of what was tried and what broke, and an HTTP client that
checks every answer the way an attacker would read it.

`Trial` counts the hostile requests (`tried`) and records each broken expectation instead of
raising, so one run reports every case that failed. `Api` wraps httpx over a real socket:
- `probe(...)` sends one hostile request (counted) and checks what no answer may ever be: a 5xx,
  an error that is not problem+json, an error naming internals (SQL, stack traces, modules), or
  any answer holding the admin token;
- `setup(...)` sends a request the attack needs to succeed (accounts, keys, grants) and raises
  `SetupFailed` otherwise;
- a 429 the attack did not provoke on purpose is waited out (its `Retry-After`, which must be
  there) and the request is sent again, so attacks also run against an API at default limits.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.api_client import Customer as Customer
from tests.api_client import key_headers

PROBLEM = "application/problem+json"
PROBLEM_BASE = "/problems/"  # relative: GET /problems/<slug> on the API (problems.py)
# Words an error body must never hold: stack traces, SQL, drivers, module paths.
INTERNALS = (
    "Traceback", 'File "', ".py", "site-packages", "asyncpg", "psycopg", "aiokafka",
    "pydantic", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "postgres", "Postgres",
    "RecursionError", "ValueError", "KeyError", "TypeError", "Exception",
)  # fmt: skip
RATE_LIMIT_WAIT_MAX_S = 30.0  # one request never waits longer than this for the limiter
DEFAULT_DEADLINE_S = 60.0
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class AttackResult:
    tried: int  # hostile requests (or events) sent
    held: bool  # the ledger resisted every one of them
    detail: str  # what broke, or a one-line summary when nothing did


class SetupFailed(Exception):
    """A request the attack needed (not an attack itself) did not succeed."""


@dataclass
class Trial:
    name: str
    tried: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
        return ok

    def result(self, summary: str) -> AttackResult:
        if not self.failures:
            return AttackResult(self.tried, True, summary)
        shown = "; ".join(self.failures[:5])
        more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        return AttackResult(self.tried, False, f"{len(self.failures)} broken: {shown}{more}")


def short(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text[:300]!r}"


class Api:
    """An httpx client on `base_url` that checks every answer (see the module docstring)."""

    def __init__(self, http: httpx.AsyncClient, admin_token: str, trial: Trial) -> None:
        self.http, self.admin_token, self.trial = http, admin_token, trial

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def probe(
        self, method: str, url: str, *, what: str = "", rate_limited_ok: bool = False,
        http_layer_ok: bool = False, **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        """One hostile request: counted, and its answer checked for what may never be.
        `http_layer_ok`: the HTTP server may refuse it before the app sees it (a request line
        or header it cannot parse), with its own plain-text 400/414/431."""
        self.trial.tried += 1
        response = await self._send(method, url, wait_out_429=not rate_limited_ok, **kwargs)
        if not (http_layer_ok and refused_by_http_layer(response)):
            self.check_answer(response, what or f"{method} {url[:120]}")
        return response

    async def setup(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._send(method, url, wait_out_429=True, **kwargs)
        if not response.is_success:
            raise SetupFailed(f"{method} {url}: {short(response)}")
        return response

    async def _send(
        self, method: str, url: str, *, wait_out_429: bool, **kwargs: Any
    ) -> httpx.Response:
        deadline = time.monotonic() + RATE_LIMIT_WAIT_MAX_S
        while True:
            response = await self.http.request(method, url, **kwargs)
            if response.status_code != 429 or not wait_out_429:
                return response
            wait_s = retry_after(response)
            if wait_s is None:
                self.trial.check(False, f"{method} {url[:80]}: 429 without a valid Retry-After")
                return response
            if time.monotonic() + wait_s > deadline:
                return response
            await asyncio.sleep(wait_s)  # the server said when: wait exactly that

    def check_answer(self, response: httpx.Response, what: str) -> None:
        trial = self.trial
        trial.check(response.status_code < 500, f"{what}: a server error {short(response)}")
        trial.check(self.admin_token not in response.text, f"{what}: the admin token echoed")
        if response.status_code < 400:
            return
        content_type = response.headers.get("content-type", "")
        if not trial.check(
            content_type == PROBLEM, f"{what}: error not problem+json {short(response)}"
        ):
            return
        check_problem_body(trial, response, what)


def refused_by_http_layer(response: httpx.Response) -> bool:
    plain = response.headers.get("content-type", "").startswith("text/plain")
    return response.status_code in (400, 414, 431) and plain


def check_problem_body(trial: Trial, response: httpx.Response, what: str) -> None:
    try:
        body = response.json()
    except ValueError:
        trial.check(False, f"{what}: problem body is not JSON")
        return
    shape = isinstance(body, dict) and all(
        isinstance(body.get(k), str) and body[k] for k in ("type", "title", "detail")
    )
    if not trial.check(shape, f"{what}: problem body lacks type/title/detail {short(response)}"):
        return
    trial.check(body.get("status") == response.status_code, f"{what}: status differs in body")
    trial.check(body["type"].startswith(PROBLEM_BASE), f"{what}: type {body['type']!r}")
    for word in INTERNALS:
        trial.check(word not in response.text, f"{what}: error names internals ({word!r})")


def problem_type(response: httpx.Response) -> str:
    """The problem's slug (`rate-limited`), or '' for an answer that is not a problem."""
    try:
        body = response.json()
    except ValueError:
        return ""
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return str(kind).removeprefix(PROBLEM_BASE)


def retry_after(response: httpx.Response) -> int | None:
    """Retry-After as whole seconds ≥ 1, or None when missing or not that."""
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def unique(prefix: str) -> str:
    """An id no earlier run used: attacks may run again and again against one API."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# One meaning of a bearer header and of a customer for every test helper.
bearer = key_headers


async def new_customer(api: Api, prefix: str) -> Customer:
    account_id = unique(prefix)
    await api.setup(
        "POST", "/v1/admin/accounts", json={"account_id": account_id, "name": prefix},
        headers=api.admin,
    )  # fmt: skip
    key = await api.setup("POST", f"/v1/admin/accounts/{account_id}/keys", headers=api.admin)
    return Customer(account_id, key.json()["keyId"], key.json()["secret"])


async def submit(api: Api, account_id: str, kind: str, body: Mapping[str, Any]) -> str:
    """An admin command (`grants`, `adjustments`, `refunds`, `holds`…); its command id."""
    answer = await api.setup(
        "POST", f"/v1/admin/accounts/{account_id}/{kind}", json=dict(body), headers=api.admin
    )
    command_id: str = answer.json()["commandId"]
    return command_id


async def ingest(api: Api, events: list[dict[str, Any]]) -> None:
    await api.setup("POST", "/v1/events", json={"events": events}, headers=api.admin)


async def command_status(api: Api, account_id: str, command_id: str) -> dict[str, Any]:
    answer = await api.setup(
        "GET", f"/v1/admin/commands/{command_id}", params={"account_id": account_id},
        headers=api.admin,
    )  # fmt: skip
    status: dict[str, Any] = answer.json()
    return status


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, deadline_s: float = DEFAULT_DEADLINE_S
) -> None:
    """Poll until `condition` holds; SetupFailed naming `what` once the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            raise SetupFailed(f"timed out after {deadline_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_applied(api: Api, account_id: str, command_id: str) -> dict[str, Any]:
    """Until the writer processed the command; its status (applied or rejected)."""
    found: dict[str, Any] = {}

    async def processed() -> bool:
        found.update(await command_status(api, account_id, command_id))
        return bool(found["status"] != "pending")

    await wait_for(processed, f"command {command_id} of {account_id} to be processed")
    return found


async def ledger(api: Api, customer: Customer, **params: Any) -> list[dict[str, Any]]:
    answer = await api.setup(
        "GET", "/v1/credits/ledger", params={"limit": 500, **params}, headers=customer.headers
    )
    entries: list[dict[str, Any]] = answer.json()["data"]
    return entries


async def wait_ledger(api: Api, customer: Customer, entries: int) -> list[dict[str, Any]]:
    """Until the customer's ledger holds at least `entries` entries; then all of them."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await ledger(api, customer)
        return len(found) >= entries

    try:
        await wait_for(enough, f"{entries} ledger entries of {customer.account_id}")
    except SetupFailed as error:
        seen = [(e["reason"], e["delta"], e["source"]) for e in found]
        raise SetupFailed(f"{error}; the ledger has {seen}") from None
    return found


async def operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of the served OpenAPI document."""
    document = (await api.setup("GET", "/openapi.json")).json()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def caller_kind(path: str) -> str:
    """Who an operation is for, by its path: customer, admin, ingest or public."""
    if path.startswith("/v1/admin/"):
        return "admin"
    if path == "/v1/events":
        return "ingest"
    if path.startswith("/v1/"):
        return "customer"
    return "public"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
