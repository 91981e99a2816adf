"""The AsyncAPI document of our topics, written by faststream, which is a documentation tool
here, not a runtime dependency (schemas/README.md says why).

`asyncapi_document()` declares the contract's channels and their message models on a faststream
broker that never connects, and lets faststream write the specification. It needs the `docs`
extra (`pip install 'creditledger[docs]'`; the `test` extra has it too, so CI checks the
published file is current). `creditledger schemas export` writes the result to
`schemas/json/asyncapi.json`; the API serves that file (`published_document()`), so a service
runs without faststream installed.

The topic names are the contract's (v1), as the published JSON Schemas' file names are; a test
checks they are the settings' defaults (`schemas` imports no service).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.commands import AnyCommand
from schemas.ledger import AlertMessage, LedgerEntryMessage
from schemas.usage import UsageEvent

USAGE_TOPIC = "credits.usage.v1"
COMMANDS_TOPIC = "credits.commands.v1"
LEDGER_TOPIC = "credits.ledger.v1"
ALERTS_TOPIC = "credits.alerts.v1"
PUBLISHED = Path(__file__).parent / "json" / "asyncapi.json"


class DocsExtraMissing(RuntimeError):
    """faststream is not installed: the AsyncAPI document cannot be generated here."""


def published_document() -> dict[str, Any]:
    """The committed document (`creditledger schemas export` keeps it current)."""
    document: dict[str, Any] = json.loads(PUBLISHED.read_text())
    return document


def asyncapi_document() -> dict[str, Any]:
    """Generated for the contract's topic names, so the published file is stable."""
    try:  # imported here: faststream is the `docs` extra, absent from a service's install
        from faststream.kafka import KafkaBroker
        from faststream.specification import AsyncAPI
    except ImportError as missing:
        raise DocsExtraMissing(
            "writing the AsyncAPI document needs faststream: pip install 'creditledger[docs]'"
        ) from missing
    broker = KafkaBroker("localhost:9092")

    @broker.subscriber(USAGE_TOPIC, title="usage", description="one message per call")
    async def usage(event: UsageEvent) -> None:  # declared for the document, never run
        return None

    @broker.subscriber(COMMANDS_TOPIC, title="commands", description="billing commands")
    async def commands(command: AnyCommand) -> None:
        return None

    broker.publisher(
        LEDGER_TOPIC, title="ledger", schema=LedgerEntryMessage,
        description="every ledger entry, per-account seq order, after commit",
    )  # fmt: skip
    broker.publisher(
        ALERTS_TOPIC, title="alerts", schema=AlertMessage,
        description="low balance, depleted, auto-reload requested, grant expired",
    )  # fmt: skip
    spec = AsyncAPI(broker, title="creditledger topics", version="1.0.0")
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document
