"""The OpenAPI document is typed: every 2xx answer has a schema (JSON bodies a named model with
properties, never an untyped object), every operation a named camelCase operationId and a
summary, every command route declares `Idempotency-Key`, and every operation declares its 400
(unknown query parameters are refused on every route). That the committed document is the one
the code makes: test_schemas_published.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.api.app import openapi_document

OPERATION_ID = re.compile(r"^[a-z][a-zA-Z0-9]+$")
# Admin POSTs that publish a command to Kafka: Idempotency-Key makes their retries safe.
COMMAND_PATH = re.compile(
    r"^/v1/admin/accounts/\{account_id\}/(grants|adjustments|refunds|void|holds|settings)"
    r"(/.*)?$"
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return found
    return schema


def test_every_2xx_answer_has_a_typed_schema(document: dict[str, Any]) -> None:
    untyped = []
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = response.get("content") or {}
            if not content:
                untyped.append(f"{method} {path} {status}: no content")
            for media, entry in content.items():
                schema = _resolve(document, entry.get("schema") or {})
                if "json" in media:
                    ok = schema.get("type") == "object" and bool(schema.get("properties"))
                else:
                    ok = schema.get("type") == "string"
                if not ok:
                    untyped.append(f"{method} {path} {status} {media}: {schema}")
    assert not untyped, "\n".join(untyped)


def test_json_success_bodies_are_named_models(document: dict[str, Any]) -> None:
    unnamed = [
        f"{method} {path} {status}"
        for method, path, operation in _operations(document)
        for status, response in operation["responses"].items()
        if status.startswith("2")
        for media, entry in (response.get("content") or {}).items()
        if "json" in media and "$ref" not in (entry.get("schema") or {})
    ]
    assert not unnamed, unnamed


def test_every_operation_has_a_named_operation_id_and_a_summary(document: dict[str, Any]) -> None:
    ids = []
    for method, path, operation in _operations(document):
        operation_id = operation.get("operationId", "")
        assert OPERATION_ID.match(operation_id), f"{method} {path}: operationId {operation_id!r}"
        assert operation.get("summary"), f"{method} {path}: no summary"
        ids.append(operation_id)
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    # The framework's defaults (`get_balance_v1_credits_balance_get`) are gone.
    assert {"getBalance", "checkCredits", "listLedgerEntries", "createAccount"} <= set(ids)


def test_command_routes_declare_idempotency_key(document: dict[str, Any]) -> None:
    commands = [
        (path, operation)
        for method, path, operation in _operations(document)
        if method == "POST" and COMMAND_PATH.match(path)
    ]
    assert len(commands) >= 9
    for path, operation in commands:
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in headers, path
        assert "Idempotent-Replayed" in operation["responses"]["202"].get("headers", {}), path


def test_reads_declare_their_headers(document: dict[str, Any]) -> None:
    balance = document["paths"]["/v1/credits/balance"]["get"]["responses"]["200"]["headers"]
    assert {"X-Credits-Remaining", "X-Ledger-Seq", "X-Ledger-Stale"} <= set(balance)
    limited = document["paths"]["/v1/credits/ledger"]["get"]["responses"]["429"]["headers"]
    assert "Retry-After" in limited


def test_every_operation_declares_400_problem(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        answer = operation["responses"].get("400")
        assert answer, f"{method} {path}: no 400 (unknown query parameters)"
        assert "application/problem+json" in answer["content"], f"{method} {path}"


def test_customer_bodies_are_camel_case(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Balance", "Check", "LedgerPage", "GrantsPage", "Usage", "Summary", "Keys"):
        for field in schemas[name]["properties"]:
            assert "_" not in field, f"{name}.{field}"
    # The contract names a ledger entry's fields in snake_case (as on credits.ledger.v1).
    assert "balance_after" in schemas["LedgerEntry"]["properties"]
