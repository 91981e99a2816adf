"""The AsyncAPI document of our topics, described through faststream (which generates it).

The writer does not consume through faststream (see services/writer/README.md); the broker here
only declares channels and their message models so faststream can write the specification:
`creditledger schemas export` writes it beside the JSON Schemas, and the API serves it.
"""

from __future__ import annotations

import json
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from schemas.commands import AnyCommand
from schemas.ledger import AlertMessage, LedgerEntryMessage
from schemas.usage import UsageEvent
from services.platform.settings import Settings


def asyncapi_document() -> dict[str, Any]:
    """For the contract's topic names (the defaults), so the published file is stable."""
    settings = Settings.model_construct()  # field defaults only: no environment
    broker = KafkaBroker("localhost:9092")

    @broker.subscriber(settings.usage_topic, title="usage", description="one message per call")
    async def usage(event: UsageEvent) -> None:  # declared for the document, never run
        return None

    @broker.subscriber(settings.commands_topic, title="commands", description="billing commands")
    async def commands(command: AnyCommand) -> None:
        return None

    broker.publisher(
        settings.ledger_topic, title="ledger", schema=LedgerEntryMessage,
        description="every ledger entry, per-account seq order, after commit",
    )  # fmt: skip
    broker.publisher(
        settings.alerts_topic, title="alerts", schema=AlertMessage,
        description="low balance, depleted, auto-reload requested, grant expired",
    )  # fmt: skip
    spec = AsyncAPI(broker, title="creditledger topics", version="1.0.0")
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document
