"""Instants in request bodies are ISO-8601 text, as the contract says, and nothing else.

Pydantic's lax datetime parsing also takes Unix timestamps (`0`, `"0"`, `1.5e9`), so a body with
`"occurred_at": 0` would become a 1970 event: a backdated grant or consume no producer meant.
Every datetime field of a model must come as text shaped like an ISO-8601 date and time.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel

ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
MESSAGE = "an ISO-8601 date and time with an offset, e.g. 2026-11-21T10:00:00Z"


def _is_instant(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("format") == "date-time":
        return True
    return any(_is_instant(option) for option in schema.get("anyOf", ()))


@functools.cache
def instant_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields its JSON Schema (so the OpenAPI document) calls `format: date-time`."""
    properties = model.model_json_schema().get("properties", {})
    return tuple(name for name, schema in properties.items() if _is_instant(schema))


def misshapen_instants(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    """The datetime fields of `model` that `data` gives as anything but ISO-8601 text."""
    return [
        name
        for name in instant_fields(model)
        if data.get(name) is not None
        and not (isinstance(data[name], str) and ISO_INSTANT.match(data[name]))
    ]
