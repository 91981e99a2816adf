"""`POST /v1/events`: usage ingest over HTTP for services without a Kafka client.

One usage event, or `{"events": [...]}` with at most `MAX_EVENTS`, authorised by the ingest
token (`CREDITLEDGER_INGEST_TOKEN`) or an admin token with the `events:write` scope (an
ingest-only key: `POST /v1/admin/tokens {"name": …, "scopes": ["events:write"]}`).
Every event is validated with the writer's own model first: one invalid event answers 422
naming its field (`events[3].credits`) and nothing of the batch is published. So is what the
writer would surely dead-letter: an `occurred_at` more than `max_future_skew_s` ahead of now
(`occurred-in-future`), or one request id twice in the batch with different payloads
(`request-id-reused`; the same payload twice is a harmless retry). Otherwise all
are published keyed by account, and the answer, 202 `{"accepted": n}`, comes only once Kafka
acknowledged every one.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError

from schemas.usage import UsageEvent
from services.api import instants
from services.api.auth import INGEST_CREDENTIAL, AdminDoc, admin_caller, presented_secret, require
from services.api.instants import misshapen_instants
from services.api.models.ops import Accepted
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import bounded_body, json_body, limit_caller
from services.platform.settings import Settings

router = APIRouter(tags=["ingest"])
MAX_EVENTS = 1000
PUBLISH_TIMEOUT_S = 15.0
_EVENTS = TypeAdapter(list[UsageEvent])
_EVENTS_WRITE = require("events:write")


async def ingest_caller(request: Request, _: AdminDoc = None) -> str:
    """The ingest token, or else an admin token allowed to write events."""
    settings: Settings = request.app.state.settings
    presented = presented_secret(request)
    expected = settings.ingest_token
    if presented and expected and secrets.compare_digest(presented.encode(), expected.encode()):
        limit_caller(request, "ingest")
        return "ingest"
    caller = await _EVENTS_WRITE(await admin_caller(request, INGEST_CREDENTIAL))
    return caller.token_id


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    operation_id="ingestEvents",
    summary="Publish usage events (one, or a batch of at most 1,000) for services without Kafka",
    responses=problem_responses(400, 401, 403, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            UsageEvent.model_json_schema(),
                            {
                                "type": "object",
                                "properties": {
                                    "events": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_EVENTS,
                                        "items": UsageEvent.model_json_schema(),
                                    }
                                },
                                "required": ["events"],
                                "additionalProperties": False,
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def ingest(
    request: Request, _caller: Annotated[str, Depends(ingest_caller)]
) -> dict[str, int]:
    events, batch = _parse(await bounded_body(request))
    producer: AIOKafkaProducer = request.app.state.producer
    settings: Settings = request.app.state.settings
    if doomed := _doomed(events, batch, datetime.now(UTC), settings.max_future_skew_s):
        raise Problem(
            422, "invalid-request", f"{doomed[0]['field']}: {doomed[0]['message']}",
            extra={"errors": doomed},
        )  # fmt: skip
    try:
        acks = [
            await producer.send(
                settings.usage_topic,
                event.model_dump_json(exclude_none=True).encode(),
                key=event.account_id.encode(),
            )
            for event in events
        ]
        await asyncio.wait_for(asyncio.gather(*acks), PUBLISH_TIMEOUT_S)
    except Exception as error:  # Kafka down or slow: the caller may retry (request ids dedupe)
        raise Problem(503, "unavailable", "Kafka did not acknowledge the events") from error
    return {"accepted": len(events)}


def _parse(body: bytes) -> tuple[list[UsageEvent], bool]:
    """The events, and whether they came as a batch (`{"events": [...]}`)."""
    document: Any = json_body(body)  # 400 not JSON or too deep, 422 NUL or lone surrogates
    batch = isinstance(document, dict) and set(document) == {"events"}
    items = document["events"] if batch else [document]
    if not isinstance(items, list) or not items:
        raise Problem(422, "invalid-request", "events: a non-empty list is required")
    if len(items) > MAX_EVENTS:
        raise Problem(422, "invalid-request", f"events: at most {MAX_EVENTS} per request")
    misshapen = [
        {"field": f"events[{i}].{name}" if batch else name, "message": instants.MESSAGE}
        for i, item in enumerate(items) if isinstance(item, dict)
        for name in misshapen_instants(UsageEvent, item)
    ]  # fmt: skip
    if misshapen:
        raise Problem(422, "invalid-request", f"{misshapen[0]['field']}: {instants.MESSAGE}",
                      extra={"errors": misshapen})  # fmt: skip
    try:
        return _EVENTS.validate_python(items), batch
    except ValidationError as error:
        errors = [_field_error(e, batch) for e in error.errors()]
        raise Problem(
            422, "invalid-request", f"{errors[0]['field']}: {errors[0]['message']}",
            extra={"errors": errors},
        ) from error  # fmt: skip


def _field_error(error: Any, batch: bool) -> dict[str, str]:
    index, *path = error["loc"]
    where = ".".join(str(p) for p in path) or "(event)"
    field = f"events[{index}].{where}" if batch else where
    return {"field": field, "message": str(error["msg"])}


def _doomed(
    events: list[UsageEvent], batch: bool, now: datetime, max_future_skew_s: float
) -> list[dict[str, str]]:
    """What the writer would dead-letter for sure, named by field."""
    errors: list[dict[str, str]] = []
    latest = now + timedelta(seconds=max_future_skew_s)
    first: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    for index, event in enumerate(events):
        prefix = f"events[{index}]." if batch else ""
        if event.occurred_at > latest:
            errors.append({
                "field": prefix + "occurred_at",
                "message": f"more than {max_future_skew_s:.0f} s ahead of now: the writer would"
                " dead-letter it (occurred-in-future)",
            })  # fmt: skip
        key, payload = (event.account_id, event.request_id), _canonical(event)
        earlier = first.setdefault(key, (index, payload))
        if earlier[1] != payload:
            errors.append({
                "field": prefix + "request_id",
                "message": f"events[{earlier[0]}] has this request_id with another payload: the"
                " writer would dead-letter this one (request-id-reused)",
            })  # fmt: skip
    return errors


def _canonical(event: UsageEvent) -> dict[str, Any]:
    """The payload as the writer compares it: the named fields, the instant in UTC."""
    return {**event.model_dump(), "occurred_at": event.occurred_at.astimezone(UTC)}
