"""The published JSON Schemas (`schemas/json/*.json`), generated from the pydantic models.

`creditledger schemas export` writes them; tests/unit/test_schemas_published.py fails when the
models drift from the files, and says whether the change breaks existing producers or readers
(a field removed, a field newly required, a type changed) or only needs a re-export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.commands import Command
from schemas.ledger import AlertMessage, LedgerEntryMessage
from schemas.usage import UsageEvent

JSON_DIR = Path(__file__).parent / "json"


def published() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every topic's message."""
    return {
        "credits.usage.v1.json": UsageEvent.model_json_schema(),
        "credits.commands.v1.json": TypeAdapter(Command).json_schema(),
        "credits.ledger.v1.json": LedgerEntryMessage.model_json_schema(),
        "credits.alerts.v1.json": AlertMessage.model_json_schema(),
    }


def documents() -> dict[str, dict[str, Any]]:
    """The API's OpenAPI and the topics' AsyncAPI documents, published beside the schemas."""
    from schemas.asyncapi import asyncapi_document
    from services.api.app import openapi_document

    return {"asyncapi.json": asyncapi_document(), "openapi.json": openapi_document()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in {**published(), **documents()}.items():
        path = directory / name
        path.write_text(render(schema))
        written.append(path)
    return written


def breaking_changes(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """What in `new` would break a party built against `old` (objects compared recursively)."""
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name in old_props.keys() - new_props.keys():
        problems.append(f"{where}{name}: removed")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{where}{name}: newly required")
    for name in old_props.keys() & new_props.keys():
        before, after = old_props[name], new_props[name]
        retyped = before.get("type") != after.get("type") or before.get("anyOf") != after.get(
            "anyOf"
        )
        if retyped and before.get("$ref") is None and after.get("$ref") is None:
            problems.append(f"{where}{name}: type changed")
        problems += breaking_changes(before, after, f"{where}{name}.")
    for name, definition in old.get("$defs", {}).items():
        if name in new.get("$defs", {}):
            problems += breaking_changes(definition, new["$defs"][name], f"{where}{name}.")
        else:
            problems.append(f"{where}$defs.{name}: removed")
    return problems
