"""The HTTP API against its own OpenAPI document, by schemathesis, on the real stack.

The document is `app.openapi()`; every operation gets generated requests (positive: within the
schema, negative: outside it) with every response check schemathesis has for a single response:
not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, response_headers_conformance and negative_data_rejection. Checks
that re-send requests on their own (ignored_auth, use_after_free…) are not run: they need
schemathesis's own transport (see below); test_api_cross_account.py covers authentication.

Each operation runs as the caller it is for: customer operations with account B's key, admin
operations with the admin token, and both run once more as the other caller, which must be
refused (401/403) conformingly. Operations endpoints run without a credential.

Requests go through httpx's ASGITransport to the app in this process, on the test's event loop:
the app's asyncpg pool and Kafka producer belong to that loop, so schemathesis's ASGI transport
(which runs the app on an event loop of its own) cannot serve them. Hypothesis runs in a worker
thread and hands each request to the loop. Bounded and deterministic: `max_examples` per
operation and mode, `derandomize=True`, no example database. Nothing is excluded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.api.reads.common import encode_cursor
from services.platform.settings import Settings
from services.runtime import running
from tests.api_client import BASE_URL, Customer, admin_headers, new_customer
from tests.messages import at, command, grant, usage
from tests.pipeline import Driver

pytestmark = [
    pytest.mark.integration,
    # raised inside schemathesis's own strategies, not ours
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
MAX_EXAMPLES = 20  # per operation, positive; negative gets half
REQUEST_TIMEOUT_S = 30.0
BUDGET_S = 60.0
# Framework pages, not the API: the document itself and its two viewers.
NOT_DOCUMENTED = {"/openapi.json", "/docs", "/docs/assets/{name}", "/redoc"}


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@dataclass
class Stack:
    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    customer: Customer


@pytest.fixture
async def stack(namespace: Settings) -> AsyncIterator[Stack]:
    settings = namespace.model_copy(
        # No rate limit in the way; `min_seq` answers at once (its wait: test_api_reads.py).
        update={
            "api_rate_limit_burst": 1_000_000,
            "api_rate_limit_per_s": 1_000_000.0,
            "api_read_wait_max_ms": 0,
        }
    )
    async with running(namespace, ("writer", "projector")) as pipeline:
        driver = Driver(namespace, pipeline.pool, pipeline.producer, pipeline.tasks)
        app = create_app(settings, pipeline.pool, pipeline.producer)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, timeout=REQUEST_TIMEOUT_S
        ) as http:
            customer = await new_customer(http, settings, "acct_b")
            await driver.commands(
                grant("acct_b", 50, "g1", bucket="subscription", expires_at="2027-06-01T00:00:00Z"),
                grant("acct_b", 9, "g2", bucket="gift"),
            )
            await driver.usage(*(usage("acct_b", f"r{n}", credits=2, occurred_at=at(n))
                                 for n in range(4)))  # fmt: skip
            await driver.commands(
                command("refund", "acct_b", "rf1", request_id="r1"),
                command("hold", "acct_b", "h1", hold_id="h1", amount=3,
                        expires_at="2027-01-01T00:00:00Z"),
            )  # fmt: skip
            await driver.settled()
            yield Stack(app, http, settings, customer)


def test_every_route_is_documented() -> None:
    app = create_app(Settings(admin_token="t"), None, None)  # type: ignore[arg-type]
    served = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path not in NOT_DOCUMENTED
        for method in set(route.methods or ()) - {"HEAD"}
    }
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert served == documented


async def test_the_api_conforms_to_its_openapi_document(stack: Stack) -> None:
    document = stack.app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    # The document declares its security schemes; the caller's credential is set here per
    # operation (`_callers`), so schemathesis must not generate or negate it: a negative case
    # "without Authorization" would still be sent with ours. Auth: test_attacks_contract.py.
    schema.config.generation.with_security_parameters = False
    loop = asyncio.get_running_loop()
    customer, admin = stack.customer.headers, admin_headers(stack.settings)
    started = time.monotonic()
    failures = await asyncio.to_thread(_run, schema, loop, stack.http, customer, admin)
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET_S, f"the contract run took {elapsed:.0f} s"
    # The run did reach the data: B's key still reads B's balance.
    balance = await stack.http.get("/v1/credits/balance", headers=customer)
    assert balance.json()["grantedTotal"] == 59


def _callers(
    path: str, customer: dict[str, str], admin: dict[str, str]
) -> list[tuple[str, dict[str, str]]]:
    if path.startswith("/v1/admin/"):
        return [("admin", admin), ("customer", customer)]
    if path.startswith("/v1/"):
        return [("customer", customer), ("admin", admin)]
    return [("anonymous", {})]


def _run(
    schema: Any,
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    customer: dict[str, str],
    admin: dict[str, str],
) -> list[str]:
    """In a worker thread: generate, send on `loop`, check. Every failure, one per operation."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for index, (who, headers) in enumerate(_callers(operation.path, customer, admin)):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if index > 0 and mode is GenerationMode.NEGATIVE:
                    continue  # the wrong caller is refused before any input is looked at
                examples = MAX_EXAMPLES if mode is GenerationMode.POSITIVE else MAX_EXAMPLES // 2
                if index > 0:
                    examples = 3
                try:
                    _check_operation(operation, mode, examples, loop, http, headers)
                except hypothesis.errors.Unsatisfiable:
                    # No input outside the schema exists (no parameters, or free strings only).
                    assert mode is GenerationMode.NEGATIVE, operation.label
                except (Exception, BaseExceptionGroup) as error:  # reported with the others
                    failures.append(f"{operation.label} as {who} ({mode.value}):\n{error}")
    return failures


def _check_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    headers: dict[str, str],
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
        future = asyncio.run_coroutine_threadsafe(_send(http, kwargs), loop)
        response = future.result(REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


async def _send(http: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    """A schemathesis (requests-style) request, sent with httpx."""
    content: Any = kwargs.get("data")
    if isinstance(content, str):
        content = content.encode()
    return await http.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        cookies=kwargs.get("cookies") or None,
        content=content,
        json=kwargs.get("json"),
    )


def _cursor(key: int, page: int, filters: dict[str, Any]) -> str:
    """A cursor as the API makes them: anyone can make one, so its contents are input too."""
    return encode_cursor(key, page, filters)


LEDGER_FILTERS: dict[str, Any] = {"from": None, "to": None, "reason": None}
GRANT_FILTERS: dict[str, Any] = {
    "covering_date": None, "starting_at": None, "effective_before": None,
    "include_archived": False,
}  # fmt: skip


async def test_inputs_that_once_answered_5xx(stack: Stack) -> None:
    """Each of these answered 500 before (OverflowError, asyncpg errors): now 4xx problems."""
    customer, admin = stack.customer.headers, admin_headers(stack.settings)
    probes: list[tuple[str, str, dict[str, str], Any, int]] = [
        ("GET", "/v1/credits/ledger?to=9999-12-31", customer, None, 422),
        ("GET", "/v1/credits/ledger?from=0001-01-01T00:00:00%2B01:00", customer, None, 422),
        ("GET", "/v1/credits/activity?to=0001-01-01T12:00:00Z", customer, None, 422),
        ("GET", "/v1/usage?from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59Z", customer,
         None, 422),
        ("GET", "/v1/credits/grants?covering_date=0001-01-01T00:00:00%2B14:00", customer,
         None, 422),
        ("GET", f"/v1/credits/ledger?cursor={_cursor(2**64, 2, LEDGER_FILTERS)}", customer,
         None, 400),
        ("GET", f"/v1/credits/ledger?cursor={_cursor(5, 2**40, LEDGER_FILTERS)}", customer,
         None, 400),
        ("GET", f"/v1/credits/grants?next_page={_cursor(2**63, 1, GRANT_FILTERS)}", customer,
         None, 400),
        ("GET", "/v1/credits/grants/g1%00", customer, None, 422),
        ("GET", "/v1/credits/ledger/%00", customer, None, 404),
        ("POST", "/v1/admin/accounts", admin, {"account_id": "nul", "name": "a\x00b"}, 422),
        ("POST", "/v1/admin/accounts", admin, {"account_id": "sur", "name": "a\ud800"}, 422),
        ("POST", "/v1/admin/accounts/acct_b/grants", admin,
         {"amount": 1, "name": "x", "metadata": {"k\x00": "v"}}, 422),
        ("POST", "/v1/admin/accounts/acct%00b/keys", admin, None, 422),
        ("GET", "/v1/admin/commands/c%00", admin, None, 422),
        ("GET", "/v1/admin/commands/c1?account_id=a%00", admin, None, 422),
    ]  # fmt: skip
    for method, url, headers, body, status in probes:
        content = None if body is None else json.dumps(body).encode()
        sent = {**headers, "content-type": "application/json"}
        response = await stack.http.request(method, url, content=content, headers=sent)
        assert response.status_code == status, f"{method} {url}: {response.text}"
        assert response.headers["content-type"] == "application/problem+json", url
