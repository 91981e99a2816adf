"""Bodies of the operations endpoints and of HTTP ingest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from services.api.models import CamelModel, WireModel


class Health(WireModel):
    status: Literal["ok"]


class Readiness(WireModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="check name → `ok`")


class Accepted(CamelModel):
    accepted: int = Field(ge=1, description="events Kafka acknowledged")


class AsyncApiDocument(WireModel):
    """The AsyncAPI 3 document of the Kafka topics (schemas/asyncapi.py)."""

    info: dict[str, Any]
    asyncapi: str
    default_content_type: str = Field(alias="defaultContentType")
    servers: dict[str, Any]
    channels: dict[str, Any]
    operations: dict[str, Any]
    components: dict[str, Any]
