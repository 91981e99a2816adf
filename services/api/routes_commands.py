"""Admin: billing commands (grants, adjustments, refunds, voids, holds, captures, releases,
settings) and their outcome.

Commands are validated with the contract's command models (and what the writer would surely
refuse is refused at once: 422 naming the field, 404 voiding a grant the account does not have
open; `_refuse_what_the_writer_would`), published to the commands topic keyed by account and
answered 202 `{"commandId"}` only once Kafka acknowledged them; their outcome is
`GET /v1/admin/commands/{command_id}`, found by id alone. `Idempotency-Key` (see idempotency.py)
makes a retried write return the first answer and publish once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Query, Request, Response

from schemas.commands import (
    AccountSettingsCommand,
    AdjustmentCommand,
    CaptureCommand,
    CommandBase,
    GrantCommand,
    HoldCommand,
    RefundCommand,
    ReleaseCommand,
    VoidGrantCommand,
)
from services.api import idempotency
from services.api.admin_common import (
    COMMANDS_READ,
    COMMANDS_WRITE,
    AccountPath,
    admin_doc,
    admin_router,
    hand_body,
    invalid,
    json_object,
    parse_body,
    require_account,
)
from services.api.models import TYPED
from services.api.models import admin as out
from services.api.problems import Problem
from services.api.reads.common import ObjectId
from services.api.request_id import kafka_headers
from services.platform.settings import Settings

router = admin_router()
PUBLISH_TIMEOUT_S = 15.0
# Declared on every command route; read by hand in `_submit` (its checks answer 422 as before).
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "makes a retry safe: the same key replays the first answer (and publishes "
    "once); the same key with another body answers 409",
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS,
               "pattern": "^[ -~]+$"},
}  # fmt: skip
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

RECORD_COMMAND = """
INSERT INTO api_commands (account_id, command_id, type) VALUES ($1, $2, $3)
ON CONFLICT (account_id, command_id) DO NOTHING
"""
COMMAND_PUBLISHED = """
UPDATE api_commands SET kafka_partition = $3, kafka_offset = $4
WHERE account_id = $1 AND command_id = $2
"""
# Where a command id is known, by id alone or within one account ($2 NULL: any account).
COMMAND_DECIDED = """
SELECT account_id, status, reason FROM processed_commands
WHERE command_id = $1 AND ($2::text IS NULL OR account_id = $2) LIMIT 2
"""
COMMAND_SENT = """
SELECT account_id, kafka_partition IS NOT NULL AS acknowledged FROM api_commands
WHERE command_id = $1 AND ($2::text IS NULL OR account_id = $2) LIMIT 2
"""
COMMAND_DEAD_LETTER = """
SELECT d.error_code, d.error_message
FROM api_commands c
JOIN dead_letters d ON d.account_id = c.account_id AND d.topic = $3
 AND d.kafka_partition = c.kafka_partition AND d.kafka_offset = c.kafka_offset
WHERE c.account_id = $1 AND c.command_id = $2
"""
# A command published straight to Kafka and dead-lettered: its id is in the raw bytes only.
# Dead letters are few; the bytes' match is checked again as JSON (`_names_command`).
COMMAND_DEAD_LETTERS_NAMING = """
SELECT account_id, error_code, error_message, raw_value FROM dead_letters
WHERE topic = $3 AND ($2::text IS NULL OR account_id = $2)
  AND position(convert_to($1, 'UTF8') IN raw_value) > 0
ORDER BY recorded_at, kafka_partition, kafka_offset
LIMIT 50
"""
# Whether the account has the grant open: as projected (a voided or expired grant never opens
# again: grant ids are command ids, applied once); not projected yet, as decided by the writer
# or sent by this API and acknowledged (a void right behind its grant must not be refused).
GRANT_OPEN = """
SELECT coalesce(
    (SELECT state NOT IN ('voided', 'expired') FROM grants_view
     WHERE account_id = $1 AND grant_id = $2),
    EXISTS (SELECT 1 FROM processed_commands
            WHERE account_id = $1 AND command_id = $2 AND status = 'applied')
    OR EXISTS (SELECT 1 FROM api_commands WHERE account_id = $1 AND command_id = $2
               AND type = 'grant' AND kafka_partition IS NOT NULL)
)
"""
# Fields the API sets itself: the account from the path, the type from the route.
SERVER_FIELDS = {
    "account_id": "taken from the path",
    "type": "given by the endpoint",
    "command_id": "generated (send an Idempotency-Key header to make retries safe)",
}


def _command_doc(
    model: type[CommandBase], operation_id: str, summary: str, *path_fields: str
) -> dict[str, Any]:
    extra = _command_body(model, *path_fields)
    extra["parameters"] = [IDEMPOTENCY_KEY]
    return {
        "status_code": 202,
        "response_model": out.CommandAccepted,
        "operation_id": operation_id,
        "summary": summary,
        "dependencies": COMMANDS_WRITE,
        "responses": {202: {"headers": REPLAYED_HEADER}, **admin_doc(404, 409, 503)},
        "openapi_extra": extra,
    }


def _command_body(model: type[CommandBase], *path_fields: str) -> dict[str, Any]:
    """A command's body: required when fields beyond the path's and the server's are; an
    adjustment's amount is never 0 (which JSON Schema says with `not`)."""
    extra = hand_body(model, *SERVER_FIELDS, *path_fields)
    schema = extra["requestBody"]["content"]["application/json"]["schema"]
    extra["requestBody"]["required"] = bool(schema["required"])
    if model is AdjustmentCommand:
        schema["properties"]["amount"]["not"] = {"const": 0}
    return extra


@router.post(
    "/accounts/{account_id}/grants",
    **_command_doc(GrantCommand, "createGrant", "Grant credits to the account"),
)
async def grant(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, GrantCommand, "grant")


@router.post(
    "/accounts/{account_id}/adjustments",
    **_command_doc(AdjustmentCommand, "createAdjustment", "Adjust the balance up or down"),
)
async def adjust(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, AdjustmentCommand, "adjustment")


@router.post(
    "/accounts/{account_id}/refunds",
    **_command_doc(RefundCommand, "createRefund", "Refund a consumed request"),
)
async def refund(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, RefundCommand, "refund")


@router.post(
    "/accounts/{account_id}/void",
    **_command_doc(VoidGrantCommand, "voidGrant", "Void a grant named in the body"),
)
async def void_grant(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, VoidGrantCommand, "void_grant")


@router.post(
    "/accounts/{account_id}/grants/{grant_id}/void",
    **_command_doc(
        VoidGrantCommand, "voidGrantById", "Void the grant named in the path", "grant_id"
    ),
)
async def void_grant_by_path(
    account_id: AccountPath, grant_id: ObjectId, request: Request
) -> Response:
    return await _submit(request, account_id, VoidGrantCommand, "void_grant", grant_id=grant_id)


@router.post(
    "/accounts/{account_id}/holds",
    **_command_doc(HoldCommand, "createHold", "Reserve credits (available drops, balance not)"),
)
async def hold(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, HoldCommand, "hold")


@router.post(
    "/accounts/{account_id}/holds/{hold_id}/capture",
    **_command_doc(CaptureCommand, "captureHold", "Turn held credits into a consume", "hold_id"),
)
async def capture(account_id: AccountPath, hold_id: ObjectId, request: Request) -> Response:
    return await _submit(request, account_id, CaptureCommand, "capture", hold_id=hold_id)


@router.post(
    "/accounts/{account_id}/holds/{hold_id}/release",
    **_command_doc(ReleaseCommand, "releaseHold", "Release a hold's credits", "hold_id"),
)
async def release(account_id: AccountPath, hold_id: ObjectId, request: Request) -> Response:
    return await _submit(request, account_id, ReleaseCommand, "release", hold_id=hold_id)


@router.post(
    "/accounts/{account_id}/settings",
    **_command_doc(
        AccountSettingsCommand,
        "updateAccountSettings",
        "Low-balance threshold, auto-reload, credit limit",
    ),
)
async def account_settings(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, AccountSettingsCommand, "account_settings")


@router.get(
    "/commands/{command_id}",
    response_model=out.CommandStatus,
    operation_id="getCommand",
    summary="A command's outcome: pending, applied or rejected with the writer's reason",
    dependencies=COMMANDS_READ,
    responses=admin_doc(404, 409),
    **TYPED,
)
async def command_status(
    command_id: ObjectId,
    request: Request,
    account_id: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    ] = None,
) -> dict[str, Any]:
    """pending (published, not decided yet), applied, or rejected with the writer's
    `code: detail`; found by id alone (`account_id` narrows it when two accounts used the id).
    404 for an id never published: neither sent by this API (and acknowledged by Kafka) nor
    seen by the writer."""
    pool: asyncpg.Pool = request.app.state.pool
    settings: Settings = request.app.state.settings
    topic = settings.commands_topic
    decided = await pool.fetch(COMMAND_DECIDED, command_id, account_id)
    sent = [r for r in await pool.fetch(COMMAND_SENT, command_id, account_id) if r["acknowledged"]]
    accounts = sorted({r["account_id"] for r in decided} | {r["account_id"] for r in sent})
    if len(accounts) > 1:
        raise _in_several_accounts(command_id)
    if accounts:
        account = accounts[0]
        if decided:
            status, reason = decided[0]["status"], decided[0]["reason"]
        elif (
            dead := await pool.fetchrow(COMMAND_DEAD_LETTER, account, command_id, topic)
        ) is not None:
            status, reason = "rejected", f"{dead['error_code']}: {dead['error_message']}"
        else:
            status, reason = "pending", None
        return {"commandId": command_id, "accountId": account, "status": status, "reason": reason}
    dead_letters = [
        r
        for r in await pool.fetch(COMMAND_DEAD_LETTERS_NAMING, command_id, account_id, topic)
        if _names_command(bytes(r["raw_value"] or b""), command_id)
    ]
    if len({r["account_id"] for r in dead_letters}) > 1:
        raise _in_several_accounts(command_id)
    if dead_letters:
        dead = dead_letters[0]
        return {
            "commandId": command_id, "accountId": dead["account_id"] or None,
            "status": "rejected", "reason": f"{dead['error_code']}: {dead['error_message']}",
        }  # fmt: skip
    where = f" for account {account_id}" if account_id else ""
    raise Problem(404, "not-found", f"no command {command_id}{where} was published")


def _in_several_accounts(command_id: str) -> Problem:
    return Problem(
        409, "conflict", f"command {command_id} is in several accounts: pass ?account_id="
    )


def _names_command(raw: bytes, command_id: str) -> bool:
    """Whether a dead letter's bytes are a JSON object whose `command_id` is this one."""
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep: it names none
        return False
    return isinstance(parsed, dict) and parsed.get("command_id") == command_id


async def _submit(
    request: Request,
    account_id: str,
    model: type[CommandBase],
    command_type: str,
    **path_fields: str,
) -> Response:
    body = await json_object(request, empty_ok=True)
    errors = [
        (f"body.{name}", why) for name, why in SERVER_FIELDS.items() if name in body
    ] + [
        (f"body.{name}", f"differs from the path's {name}")
        for name, value in path_fields.items() if name in body and body[name] != value
    ]  # fmt: skip
    if errors:
        raise invalid(*errors)
    key = request.headers.get("idempotency-key")
    if key is not None and not idempotency.valid_key(key):
        raise invalid(("header.Idempotency-Key", "1 to 255 printable characters"))
    command_id = idempotency.command_id_for(account_id, key) if key else str(uuid.uuid4())
    fields = {
        "occurred_at": datetime.now(UTC).isoformat(), **body, **path_fields,
        "account_id": account_id, "type": command_type, "command_id": command_id,
    }  # fmt: skip
    command = parse_body(model, fields, frozenset(path_fields) | {"account_id"})
    if isinstance(command, AdjustmentCommand) and command.amount == 0:
        raise invalid(("body.amount", "an adjustment must not be 0"))
    pool: asyncpg.Pool = request.app.state.pool
    await require_account(pool, account_id)
    # A retry of a key already used replays (or conflicts): what was checked then holds.
    if key is None or await pool.fetchrow(idempotency.FIND, account_id, key) is None:
        await _refuse_what_the_writer_would(request, command)
    # exclude_unset: for settings, a field left out keeps its value, an explicit null clears it.
    payload = command.model_dump_json(exclude_unset=True).encode()
    if key is None:
        await _publish(request, account_id, command_id, command_type, payload)
        return _accepted(command_id)
    fingerprint = idempotency.fingerprint(request.method, request.url.path, body)
    outcome = await idempotency.claim(pool, account_id, key, fingerprint, command_id, payload)
    if isinstance(outcome, idempotency.Replay):
        return Response(
            outcome.body, outcome.status, {"Idempotent-Replayed": "true"}, "application/json"
        )
    try:
        await _publish(request, account_id, outcome.command_id, command_type, outcome.command)
    except BaseException:
        await asyncio.shield(idempotency.abandon(pool, account_id, key))
        raise
    answer = _accepted(outcome.command_id)
    await idempotency.complete(pool, account_id, key, answer.status_code, bytes(answer.body))
    return answer


async def _publish(
    request: Request, account_id: AccountPath, command_id: str, command_type: str, payload: bytes
) -> None:
    """Publish and wait for Kafka's acknowledgement (acks=all); 503 when it does not come."""
    pool: asyncpg.Pool = request.app.state.pool
    producer: AIOKafkaProducer = request.app.state.producer
    settings: Settings = request.app.state.settings
    await pool.execute(RECORD_COMMAND, account_id, command_id, command_type)
    try:
        sent = await asyncio.wait_for(
            producer.send_and_wait(
                settings.commands_topic,
                payload,
                key=account_id.encode(),
                headers=kafka_headers(request),  # the request id, for the writer's log
            ),
            PUBLISH_TIMEOUT_S,
        )
    except (KafkaError, TimeoutError) as error:
        raise Problem(503, "unavailable", "Kafka did not acknowledge the command") from error
    await pool.execute(COMMAND_PUBLISHED, account_id, command_id, sent.partition, sent.offset)


async def _refuse_what_the_writer_would(request: Request, command: CommandBase) -> None:
    """422 (naming the field) or 404 now for what the writer would surely dead-letter or reject:
    an `occurred_at` beyond the future skew, a grant over before it applies or already past, a
    void of a grant the account does not have open."""
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    errors: list[tuple[str, str]] = []
    skew_s = settings.max_future_skew_s
    if command.occurred_at > now + timedelta(seconds=skew_s):
        errors.append(("body.occurred_at", f"more than {skew_s:.0f} s ahead of now: the writer"
                       " would dead-letter it (occurred-in-future)"))  # fmt: skip
    if isinstance(command, GrantCommand) and command.expires_at is not None:
        starts = max(command.occurred_at, command.effective_at or command.occurred_at)
        if command.expires_at <= starts:
            errors.append(("body.expires_at", "at or before the grant applies (its effective_at"
                           " or occurred_at): it would expire before it starts"))  # fmt: skip
        elif command.expires_at <= now:
            errors.append(("body.expires_at", "in the past: the grant would be over already"))
    if errors:
        raise invalid(*errors)
    if isinstance(command, VoidGrantCommand):
        pool: asyncpg.Pool = request.app.state.pool
        if not await pool.fetchval(GRANT_OPEN, command.account_id, command.grant_id):
            raise Problem(
                404,
                "not-found",
                f"no open grant {command.grant_id} in account {command.account_id}",
            )


def _accepted(command_id: str) -> Response:
    body = json.dumps({"commandId": command_id}, separators=(",", ":")).encode()
    return Response(body, 202, media_type="application/json")
