"""Admin: accounts, keys (issue, list, rotate with overlap, revoke) and billing commands.

Commands are validated with the contract's command models (and what the writer would surely
refuse is refused at once: 422 naming the field, 404 voiding a grant the account does not have
open; `_refuse_what_the_writer_would`), published to the commands topic keyed by account and
answered 202 `{"commandId"}` only once Kafka acknowledged them; their outcome is
`GET /v1/admin/commands/{command_id}`, found by id alone. `Idempotency-Key` (see idempotency.py)
makes a retried write return the first answer and publish once.

Every admin route needs an admin token holding the scope it declares (`require(scope)` in
auth.py: accounts:write, keys:write, commands:write, commands:read, or admin for the admin tokens
themselves; a customer key answers 403), is rate limited per token (ratelimit.py), and reads its
body through a cap of `api_max_body_bytes` (413 beyond it).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
from schemas.common import AccountId
from services.api import idempotency, instants
from services.api.auth import ADMIN_TOKEN_PREFIX, admin, require
from services.api.instants import misshapen_instants
from services.api.keycache import key_cache
from services.api.keys import new_key_id, new_secret, secret_hash
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import bounded_body, json_body
from services.api.reads.common import ObjectId
from services.api.request_id import kafka_headers
from services.platform.settings import Settings

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin), Depends(bounded_body)]
)

M = TypeVar("M", bound=BaseModel)
Scope = Literal[
    "accounts:write", "keys:write", "commands:write", "commands:read", "events:write", "admin"
]
ACCOUNTS_WRITE = [Depends(require("accounts:write"))]
KEYS_WRITE = [Depends(require("keys:write"))]
COMMANDS_WRITE = [Depends(require("commands:write"))]
COMMANDS_READ = [Depends(require("commands:read"))]
ADMIN_ONLY = [Depends(require("admin"))]
# A path's account id: the contract's AccountId (an id it cannot be is 422, an unknown one 404).
AccountPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# Every admin route reads its body through the cap (400 bad Content-Length, 413 too large).
ADMIN_ERRORS = (400, 401, 403, 413, 422, 429)
PUBLISH_TIMEOUT_S = 15.0
DEFAULT_OVERLAP_S = 24 * 3600
MAX_OVERLAP_S = 30 * 24 * 3600

CREATE_ACCOUNT = """
INSERT INTO accounts (account_id, name) VALUES ($1, $2)
ON CONFLICT (account_id) DO NOTHING RETURNING account_id
"""
ACCOUNT_NAME = "SELECT name FROM accounts WHERE account_id = $1"
CREATE_KEY = """
INSERT INTO api_keys (account_id, key_id, secret_sha256, expires_at) VALUES ($1, $2, $3, $4)
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE account_id = $1 AND key_id = $2 AND revoked_at IS NULL
"""
LIST_KEYS = """
SELECT key_id, created_at, revoked_at, expires_at FROM api_keys
WHERE account_id = $1 ORDER BY created_at, key_id
"""
LOCK_LIVE_KEY = """
SELECT expires_at FROM api_keys
WHERE account_id = $1 AND key_id = $2 AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
FOR UPDATE
"""
EXPIRE_KEY = """
UPDATE api_keys SET expires_at = $3 WHERE account_id = $1 AND key_id = $2
"""
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
CREATE_ADMIN_TOKEN = """
INSERT INTO admin_tokens (token_id, name, secret_sha256, scopes) VALUES ($1, $2, $3, $4)
RETURNING created_at
"""
LIST_ADMIN_TOKENS = """
SELECT token_id, name, scopes, created_at, revoked_at FROM admin_tokens
WHERE tenant = '*' ORDER BY created_at, token_id
"""
REVOKE_ADMIN_TOKEN = """
UPDATE admin_tokens SET revoked_at = now()
WHERE tenant = '*' AND token_id = $1 AND revoked_at IS NULL
"""
# Fields the API sets itself: the account from the path, the type from the route.
SERVER_FIELDS = {
    "account_id": "taken from the path",
    "type": "given by the endpoint",
    "command_id": "generated (send an Idempotency-Key header to make retries safe)",
}


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: AccountId
    name: Annotated[str, Field(min_length=1, max_length=200)]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: datetime | None = None


class NewAdminToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope.__args__))]


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: Annotated[int, Field(ge=0, le=MAX_OVERLAP_S, strict=True)] = DEFAULT_OVERLAP_S


def _doc(*extra_errors: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(*sorted({*ADMIN_ERRORS, *extra_errors}))


def _inline_defs(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with each `#/$defs/X` reference replaced by X (the models are not recursive)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_defs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_defs(value, defs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline_defs(value, defs) for value in schema]
    return schema


def _body(model: type[BaseModel], *set_here: str, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body read by hand: `model` less the fields the
    server or the path sets; `occurred_at` defaults to now."""
    schema = model.model_json_schema()
    schema = _inline_defs(schema, schema.pop("$defs", {}))
    dropped = {*set_here, "occurred_at"}
    schema["properties"] = {
        name: value for name, value in schema["properties"].items() if name not in dropped
    }
    schema["required"] = [name for name in schema.get("required", []) if name not in dropped]
    if "occurred_at" in model.model_fields:
        schema["properties"]["occurred_at"] = model.model_json_schema()["properties"]["occurred_at"]
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


def _command_doc(model: type[CommandBase], *path_fields: str) -> dict[str, Any]:
    return {
        "status_code": 202,
        "dependencies": COMMANDS_WRITE,
        "responses": _doc(404, 409, 503),
        "openapi_extra": _command_body(model, *path_fields),
    }


def _command_body(model: type[CommandBase], *path_fields: str) -> dict[str, Any]:
    """A command's body: required when fields beyond the path's and the server's are; an
    adjustment's amount is never 0 (which JSON Schema says with `not`)."""
    extra = _body(model, *SERVER_FIELDS, *path_fields)
    schema = extra["requestBody"]["content"]["application/json"]["schema"]
    extra["requestBody"]["required"] = bool(schema["required"])
    if model is AdjustmentCommand:
        schema["properties"]["amount"]["not"] = {"const": 0}
    return extra


# --- accounts and keys ---------------------------------------------------------------------


@router.post(
    "/accounts",
    status_code=201,
    dependencies=ACCOUNTS_WRITE,
    responses={
        200: {
            "description": "The account exists already, with this name: nothing to create",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **_doc(409),
    },
    openapi_extra=_body(NewAccount),
)
async def create_account(request: Request, response: Response) -> dict[str, Any]:
    body = _parse(NewAccount, await _json_object(request))
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.fetchval(CREATE_ACCOUNT, body.account_id, body.name) is None:
        existing = await pool.fetchval(ACCOUNT_NAME, body.account_id)
        if existing != body.name:
            raise Problem(409, "conflict", f"account {body.account_id} exists with another name")
        response.status_code = 200  # the same account again: nothing to create
    return {"accountId": body.account_id, "name": body.name}


@router.post(
    "/accounts/{account_id}/keys",
    status_code=201,
    dependencies=KEYS_WRITE,
    responses=_doc(404),
    openapi_extra=_body(NewKey, required=False),
)
async def create_key(account_id: AccountPath, request: Request) -> dict[str, Any]:
    """Issue a key; optional body `{"expires_at": …}`. The secret is shown once."""
    body = _parse(NewKey, await _json_object(request, empty_ok=True))
    pool: asyncpg.Pool = request.app.state.pool
    await _require_account(pool, account_id)
    key_id, secret = new_key_id(), new_secret()
    await pool.execute(CREATE_KEY, account_id, key_id, secret_hash(secret), body.expires_at)
    return {"keyId": key_id, "secret": secret, "expiresAt": _iso(body.expires_at)}


@router.get("/accounts/{account_id}/keys", dependencies=KEYS_WRITE, responses=_doc(404))
async def list_keys(account_id: AccountPath, request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.app.state.pool
    await _require_account(pool, account_id)
    now = datetime.now(UTC)
    keys = [_key_json(r, now) for r in await pool.fetch(LIST_KEYS, account_id)]
    return {"accountId": account_id, "keys": keys}


def _key_json(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    expires_at: datetime | None = row["expires_at"]
    return {
        "keyId": row["key_id"], "createdAt": _iso(row["created_at"]),
        "revokedAt": _iso(row["revoked_at"]), "expiresAt": _iso(expires_at),
        "active": row["revoked_at"] is None and (expires_at is None or expires_at > now),
    }  # fmt: skip


@router.post(
    "/accounts/{account_id}/keys/{key_id}/rotate",
    status_code=201,
    dependencies=KEYS_WRITE,
    responses=_doc(404),
    openapi_extra=_body(Rotation, required=False),
)
async def rotate_key(account_id: AccountPath, key_id: ObjectId, request: Request) -> dict[str, Any]:
    """Issue a new key; the old one keeps working for `overlap_seconds` (default 24 h)."""
    body = _parse(Rotation, await _json_object(request, empty_ok=True))
    pool: asyncpg.Pool = request.app.state.pool
    new_id, secret = new_key_id(), new_secret()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_LIVE_KEY, account_id, key_id)
        if row is None:
            raise Problem(404, "not-found", f"no active key {key_id} for account {account_id}")
        old_expires = datetime.now(UTC) + timedelta(seconds=body.overlap_seconds)
        if row["expires_at"] is not None:
            old_expires = min(old_expires, row["expires_at"])
        await conn.execute(EXPIRE_KEY, account_id, key_id, old_expires)
        await conn.execute(CREATE_KEY, account_id, new_id, secret_hash(secret), None)
    key_cache(request).forget_all()  # the old key's new expiry applies here at once
    return {
        "keyId": new_id, "secret": secret, "expiresAt": None,
        "rotated": {"keyId": key_id, "expiresAt": _iso(old_expires)},
    }  # fmt: skip


@router.delete(
    "/accounts/{account_id}/keys/{key_id}",
    status_code=204,
    dependencies=KEYS_WRITE,
    responses=_doc(404),
)
async def revoke_key(account_id: AccountPath, key_id: ObjectId, request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.execute(REVOKE_KEY, account_id, key_id) == "UPDATE 0":
        raise Problem(404, "not-found", f"no active key {key_id} for account {account_id}")
    key_cache(request).forget_all()  # refused here at once; other processes within the TTL
    return Response(status_code=204)


# --- commands ------------------------------------------------------------------------------


@router.post("/accounts/{account_id}/grants", **_command_doc(GrantCommand))
async def grant(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, GrantCommand, "grant")


@router.post("/accounts/{account_id}/adjustments", **_command_doc(AdjustmentCommand))
async def adjust(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, AdjustmentCommand, "adjustment")


@router.post("/accounts/{account_id}/refunds", **_command_doc(RefundCommand))
async def refund(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, RefundCommand, "refund")


@router.post("/accounts/{account_id}/void", **_command_doc(VoidGrantCommand))
async def void_grant(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, VoidGrantCommand, "void_grant")


@router.post(
    "/accounts/{account_id}/grants/{grant_id}/void", **_command_doc(VoidGrantCommand, "grant_id")
)
async def void_grant_by_path(
    account_id: AccountPath, grant_id: ObjectId, request: Request
) -> Response:
    return await _submit(request, account_id, VoidGrantCommand, "void_grant", grant_id=grant_id)


@router.post("/accounts/{account_id}/holds", **_command_doc(HoldCommand))
async def hold(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, HoldCommand, "hold")


@router.post(
    "/accounts/{account_id}/holds/{hold_id}/capture", **_command_doc(CaptureCommand, "hold_id")
)
async def capture(account_id: AccountPath, hold_id: ObjectId, request: Request) -> Response:
    return await _submit(request, account_id, CaptureCommand, "capture", hold_id=hold_id)


@router.post(
    "/accounts/{account_id}/holds/{hold_id}/release", **_command_doc(ReleaseCommand, "hold_id")
)
async def release(account_id: AccountPath, hold_id: ObjectId, request: Request) -> Response:
    return await _submit(request, account_id, ReleaseCommand, "release", hold_id=hold_id)


@router.post("/accounts/{account_id}/settings", **_command_doc(AccountSettingsCommand))
async def account_settings(account_id: AccountPath, request: Request) -> Response:
    return await _submit(request, account_id, AccountSettingsCommand, "account_settings")


@router.get("/commands/{command_id}", dependencies=COMMANDS_READ, responses=_doc(404, 409))
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


# --- admin tokens (scope `admin`) ------------------------------------------------------------


@router.post(
    "/tokens",
    status_code=201,
    dependencies=ADMIN_ONLY,
    responses=_doc(),
    openapi_extra=_body(NewAdminToken),
)
async def create_admin_token(request: Request) -> dict[str, Any]:
    """Mint an admin token with the given scopes; the secret (`cl_adm_…`) is shown once."""
    body = _parse(NewAdminToken, await _json_object(request))
    scopes = sorted(set(body.scopes))
    token_id, secret = "adm_" + secrets.token_hex(8), ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    pool: asyncpg.Pool = request.app.state.pool
    created_at = await pool.fetchval(
        CREATE_ADMIN_TOKEN, token_id, body.name, secret_hash(secret), scopes
    )
    return {
        "tokenId": token_id, "name": body.name, "secret": secret, "scopes": scopes,
        "createdAt": _iso(created_at),
    }  # fmt: skip


@router.get("/tokens", dependencies=ADMIN_ONLY, responses=_doc())
async def list_admin_tokens(request: Request) -> dict[str, Any]:
    """Every minted admin token, revoked ones included; never a secret."""
    pool: asyncpg.Pool = request.app.state.pool
    tokens = [
        {
            "tokenId": r["token_id"], "name": r["name"], "scopes": list(r["scopes"]),
            "createdAt": _iso(r["created_at"]), "revokedAt": _iso(r["revoked_at"]),
            "active": r["revoked_at"] is None,
        }
        for r in await pool.fetch(LIST_ADMIN_TOKENS)
    ]  # fmt: skip
    return {"tokens": tokens}


@router.delete("/tokens/{token_id}", status_code=204, dependencies=ADMIN_ONLY, responses=_doc(404))
async def revoke_admin_token(token_id: ObjectId, request: Request) -> Response:
    """Revoke: the token answers 403 from then on."""
    pool: asyncpg.Pool = request.app.state.pool
    if await pool.execute(REVOKE_ADMIN_TOKEN, token_id) == "UPDATE 0":
        raise Problem(404, "not-found", f"no active admin token {token_id}")
    return Response(status_code=204)


async def _submit(
    request: Request,
    account_id: str,
    model: type[CommandBase],
    command_type: str,
    **path_fields: str,
) -> Response:
    body = await _json_object(request, empty_ok=True)
    errors = [
        (f"body.{name}", why) for name, why in SERVER_FIELDS.items() if name in body
    ] + [
        (f"body.{name}", f"differs from the path's {name}")
        for name, value in path_fields.items() if name in body and body[name] != value
    ]  # fmt: skip
    if errors:
        raise _invalid(*errors)
    key = request.headers.get("idempotency-key")
    if key is not None and not idempotency.valid_key(key):
        raise _invalid(("header.Idempotency-Key", "1 to 255 printable characters"))
    command_id = idempotency.command_id_for(account_id, key) if key else str(uuid.uuid4())
    fields = {
        "occurred_at": datetime.now(UTC).isoformat(), **body, **path_fields,
        "account_id": account_id, "type": command_type, "command_id": command_id,
    }  # fmt: skip
    command = _parse(model, fields, frozenset(path_fields) | {"account_id"})
    if isinstance(command, AdjustmentCommand) and command.amount == 0:
        raise _invalid(("body.amount", "an adjustment must not be 0"))
    pool: asyncpg.Pool = request.app.state.pool
    await _require_account(pool, account_id)
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
        raise _invalid(*errors)
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


async def _json_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object, bounded (see `ratelimit.json_body`); `{}` when empty_ok."""
    raw = await bounded_body(request)
    if not raw.strip() and empty_ok:
        return {}
    parsed = json_body(raw)
    if not isinstance(parsed, dict):
        raise _invalid(("body", "must be a JSON object"))
    return parsed


def _parse(model: type[M], data: dict[str, Any], path: frozenset[str] = frozenset()) -> M:
    """Validate with the contract model; 422 naming each field (`body.x`, or `path.x`).
    Instants must be ISO-8601 text (instants.py): pydantic alone would read `0` as 1970."""
    misshapen = misshapen_instants(model, data)
    if misshapen:
        raise _invalid(*((f"body.{name}", instants.MESSAGE) for name in misshapen))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = []
        for e in error.errors():
            where = "path" if e["loc"] and e["loc"][0] in path else "body"
            errors.append({"loc": (where, *e["loc"]), "msg": e["msg"], "type": e["type"]})
        raise RequestValidationError(errors) from error


def _invalid(*errors: tuple[str, str]) -> RequestValidationError:
    """422 problem+json with `errors` [{field, message}] (the app's validation handler)."""
    return RequestValidationError(
        [{"loc": tuple(field.split(".", 1)), "msg": msg, "type": "value_error"}
         for field, msg in errors]
    )  # fmt: skip


async def _require_account(pool: asyncpg.Pool, account_id: str) -> None:
    if await pool.fetchval(ACCOUNT_NAME, account_id) is None:
        raise Problem(404, "not-found", f"no account {account_id}")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
