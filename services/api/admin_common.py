"""What every admin route module shares: the router (admin token, body cap), the scopes, the
path parameters, the documented errors, and reading a JSON body by hand with the contract's
models (422 naming each field).

Every admin route needs an admin token holding the scope it declares (`require(scope)` in
auth.py: accounts:write, keys:write, commands:write, commands:read, or admin for the admin tokens
themselves; a customer key answers 403), is rate limited per token (ratelimit.py), and reads its
body through a cap of `api_max_body_bytes` (413 beyond it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from services.api import instants
from services.api.auth import admin, require
from services.api.instants import misshapen_instants
from services.api.problems import Problem, problem_responses
from services.api.ratelimit import bounded_body, json_body


def admin_router() -> APIRouter:
    """A router under /v1/admin: admin token and the body cap on every route."""
    return APIRouter(
        prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin), Depends(bounded_body)]
    )


M = TypeVar("M", bound=BaseModel)
ACCOUNTS_WRITE = [Depends(require("accounts:write"))]
KEYS_WRITE = [Depends(require("keys:write"))]
COMMANDS_WRITE = [Depends(require("commands:write"))]
COMMANDS_READ = [Depends(require("commands:read"))]
ADMIN_ONLY = [Depends(require("admin"))]
# A path's account id: the contract's AccountId (an id it cannot be is 422, an unknown one 404).
AccountPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# Every admin route reads its body through the cap (400 bad Content-Length, 413 too large).
ADMIN_ERRORS = (400, 401, 403, 413, 422, 429)
ACCOUNT_NAME = "SELECT name FROM accounts WHERE account_id = $1"


def admin_doc(*extra_errors: int) -> dict[int | str, dict[str, Any]]:
    return problem_responses(*sorted({*ADMIN_ERRORS, *extra_errors}))


def inline_defs(schema: Any, defs: dict[str, Any]) -> Any:
    """The schema with each `#/$defs/X` reference replaced by X (the models are not recursive)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return inline_defs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: inline_defs(value, defs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline_defs(value, defs) for value in schema]
    return schema


def hand_body(model: type[BaseModel], *set_here: str, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body read by hand: `model` less the fields the
    server or the path sets; `occurred_at` defaults to now."""
    schema = model.model_json_schema()
    schema = inline_defs(schema, schema.pop("$defs", {}))
    dropped = {*set_here, "occurred_at"}
    schema["properties"] = {
        name: value for name, value in schema["properties"].items() if name not in dropped
    }
    schema["required"] = [name for name in schema.get("required", []) if name not in dropped]
    if "occurred_at" in model.model_fields:
        schema["properties"]["occurred_at"] = model.model_json_schema()["properties"]["occurred_at"]
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


async def json_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The body as a JSON object, bounded (see `ratelimit.json_body`); `{}` when empty_ok."""
    raw = await bounded_body(request)
    if not raw.strip() and empty_ok:
        return {}
    parsed = json_body(raw)
    if not isinstance(parsed, dict):
        raise invalid(("body", "must be a JSON object"))
    return parsed


def parse_body(model: type[M], data: dict[str, Any], path: frozenset[str] = frozenset()) -> M:
    """Validate with the contract model; 422 naming each field (`body.x`, or `path.x`).
    Instants must be ISO-8601 text (instants.py): pydantic alone would read `0` as 1970."""
    misshapen = misshapen_instants(model, data)
    if misshapen:
        raise invalid(*((f"body.{name}", instants.MESSAGE) for name in misshapen))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = []
        for e in error.errors():
            where = "path" if e["loc"] and e["loc"][0] in path else "body"
            errors.append({"loc": (where, *e["loc"]), "msg": e["msg"], "type": e["type"]})
        raise RequestValidationError(errors) from error


def invalid(*errors: tuple[str, str]) -> RequestValidationError:
    """422 problem+json with `errors` [{field, message}] (the app's validation handler)."""
    return RequestValidationError(
        [{"loc": tuple(field.split(".", 1)), "msg": msg, "type": "value_error"}
         for field, msg in errors]
    )  # fmt: skip


async def require_account(pool: asyncpg.Pool, account_id: str) -> None:
    if await pool.fetchval(ACCOUNT_NAME, account_id) is None:
        raise Problem(404, "not-found", f"no account {account_id}")


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
