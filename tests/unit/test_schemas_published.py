"""The published JSON Schemas equal what the models generate; breaking changes are named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.export import JSON_DIR, breaking_changes, documents, published, render


@pytest.mark.parametrize("name", sorted(published()))
def test_published_schema_matches_the_models(name: str) -> None:
    path = JSON_DIR / name
    assert path.exists(), f"{name} is not published: run `creditledger schemas export`"
    committed: dict[str, Any] = json.loads(path.read_text())
    generated = published()[name]
    broken = breaking_changes(committed, generated)
    assert not broken, (
        f"{name}: a change that breaks existing producers or readers: {broken}; "
        "publish a new topic version (…v2) instead"
    )
    assert path.read_text() == render(generated), (
        f"{name} drifted from the models (compatibly): run `creditledger schemas export`"
    )


def test_breaking_changes_are_found() -> None:
    old = {
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "string"}},
        "required": ["a"],
    }
    new = {
        "properties": {"a": {"type": "string"}, "c": {"type": "string"}, "d": {"type": "string"}},
        "required": ["a", "c"],
    }
    assert sorted(breaking_changes(old, new)) == [
        "a: type changed",
        "b: removed",
        "c: newly required",
    ]


def test_an_optional_field_added_is_not_breaking() -> None:
    old = {"properties": {"a": {"type": "integer"}}, "required": ["a"]}
    new = {"properties": {"a": {"type": "integer"}, "z": {"type": "string"}}, "required": ["a"]}
    assert breaking_changes(old, new) == []


@pytest.mark.parametrize("name", ["asyncapi.json", "openapi.json"])
def test_published_documents_match_the_code(name: str) -> None:
    path = JSON_DIR / name
    assert path.exists(), f"{name} is not published: run `creditledger schemas export`"
    assert path.read_text() == render(documents()[name]), (
        f"{name} drifted from the code: run `creditledger schemas export`"
    )
