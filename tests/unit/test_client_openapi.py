"""Every `Endpoints` call against the API's own OpenAPI document: the path and method exist, the
query parameters are exactly the declared ones (the API answers 400 to an undeclared one), the
body's fields are declared (and the required ones sent), headers and credentials match the
operation's, and every operation of the API has a client method.

Each method is called with every parameter given, so a parameter the client names under the
wrong wire name, or one the API dropped, fails here rather than in a user's request."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from services.api.app import openapi_document
from services.client import Endpoints
from services.client.core import ACCOUNT_HEADER, IDEMPOTENCY_HEADER, Call, Session

# Operations the clients leave out, and why.
NOT_CLIENT_CALLS = {
    "voidGrant": "the older form of voidGrantById (grant id in the body); void_grant uses the path",
}
ARGUMENTS: dict[str, object] = {
    "as_of": datetime(2026, 1, 2, tzinfo=UTC), "by": "occurred", "group_by": "day",
    "period": "daily", "bucket": "gift", "reason": "grant", "expand": ["bucket"],
    "auto_reload": {"threshold": 1, "amount": 2, "max_per_day": 3},
    "metadata": {"k": "v"}, "applies_to": ["POST /scan"], "prices": {"POST /scan": 2},
    "scopes": ["credits:read"], "events": ["low_balance"], "account": "acct_read",
    "account_id": "acct_1", "url": "https://hooks.example.com/x",
}  # fmt: skip


@cache
def document() -> dict[str, Any]:
    return openapi_document()


def sample(name: str, annotation: str) -> object:
    if name in ARGUMENTS:
        return ARGUMENTS[name]
    if "Instant" in annotation:
        return datetime(2026, 1, 1, tzinfo=UTC)
    if annotation.startswith("bool"):
        return True
    if annotation.startswith("int"):
        return 3
    return f"{name}-1"


def full_call(name: str) -> Call[Any]:
    """The method's call with every parameter given a value (`**more` left out)."""
    endpoints = Endpoints(Session(api_key=None, account="acct_0", admin_token="t",
                                  ingest_token=None, retry=None))  # type: ignore[arg-type]  # fmt: skip
    method = getattr(endpoints, name)
    kwargs = {
        p.name: sample(p.name, str(p.annotation))
        for p in inspect.signature(method).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name != "idempotency_key"
    }
    if name == "send_events":
        kwargs["events"] = [{"request_id": "r"}]
    call: Call[Any] = method(**kwargs)
    return call


def operation_of(call: Call[Any]) -> tuple[str, dict[str, Any]]:
    """The document's operation for a call's method and path (a literal path wins)."""
    candidates = []
    for template, operations in document()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, call.path) and call.method.lower() in operations:
            candidates.append((template.count("{"), template))
    assert candidates, f"{call.method} {call.path} is not in the OpenAPI document"
    template = min(candidates)[1]
    return template, document()["paths"][template][call.method.lower()]


def endpoint_methods() -> list[str]:
    return [
        name for name, member in vars(Endpoints).items()
        if callable(member) and not name.startswith("_") and name not in ("next_page",)
    ]  # fmt: skip


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return resolve(document()["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def body_schema(operation: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    schema = resolve(operation["requestBody"]["content"]["application/json"]["schema"])
    for variant in schema.get("oneOf", []):  # /v1/events: one event, or {"events": [...]}
        if set(body) <= set(resolve(variant).get("properties", {})):
            return resolve(variant)
    return schema


@pytest.mark.parametrize("name", endpoint_methods())
def test_each_call_is_what_the_openapi_document_declares(name: str) -> None:
    call = full_call(name)
    template, operation = operation_of(call)
    declared = {p["name"]: p for p in operation.get("parameters", [])}
    queries = {n for n, p in declared.items() if p["in"] == "query"}
    assert set(call.params) == queries, f"{name}: sends {sorted(call.params)} to {template}"

    headers = {n.lower() for n, p in declared.items() if p["in"] == "header"}
    if IDEMPOTENCY_HEADER in call.headers:
        assert IDEMPOTENCY_HEADER.lower() in headers, f"{name}: {template} takes no key"
    security = {next(iter(s)) for s in operation.get("security", [])}
    if call.auth == "customer":
        assert "serviceToken" in security and ACCOUNT_HEADER.lower() in headers, name
    elif call.auth == "none":
        assert not security, name
    else:
        assert security == {"adminToken"}, name

    if call.body is None:
        assert "requestBody" not in operation or not operation["requestBody"].get("required")
    else:
        schema = body_schema(operation, call.body)
        fields = set(schema.get("properties", {}))
        assert set(call.body) <= fields, f"{name}: {set(call.body) - fields} not in {template}"
        assert set(schema.get("required", [])) <= set(call.body), name


def test_every_operation_of_the_api_has_a_client_call() -> None:
    covered = {operation_of(full_call(name))[1]["operationId"] for name in endpoint_methods()}
    api = {
        operation["operationId"]
        for path, operations in document()["paths"].items()
        if path.startswith("/v1/") or path == "/dashboard/session-exchange"
        for operation in operations.values()
    }
    assert api - covered - set(NOT_CLIENT_CALLS) == set()
    assert covered <= api


def test_a_customer_read_names_the_account_it_was_given() -> None:
    session = Session(api_key=None, account="acct_0", admin_token="svc", ingest_token=None,
                      retry=None)  # type: ignore[arg-type]  # fmt: skip
    endpoints = Endpoints(session)
    for call, expected in ((endpoints.balance(), "acct_0"), (endpoints.alerts(account="b"), "b")):
        headers = session.auth_headers(call.auth, call.account)
        assert headers == {"Authorization": "Bearer svc", ACCOUNT_HEADER: expected}
