"""Admin bodies (`/v1/admin/...`): accounts, keys, commands, admin tokens, the price book."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from services.api.models import CamelModel, WireModel

SHOWN_ONCE = "shown once: only its SHA-256 is stored"


class Account(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"accountId": "acct_42", "name": "Acme Ltd"}]}
    )
    account_id: str
    name: str


class NewKey(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"keyId": "key_7", "secret": "cl_live_…", "expiresAt": None}]
        }
    )
    key_id: str
    secret: str = Field(description=SHOWN_ONCE)
    expires_at: str | None


class Key(CamelModel):
    key_id: str
    created_at: str | None
    revoked_at: str | None
    expires_at: str | None
    active: bool


class Keys(CamelModel):
    account_id: str
    keys: list[Key]


class RotatedKey(CamelModel):
    key_id: str
    expires_at: str | None = Field(description="the old key answers until then")


class Rotation(NewKey):
    rotated: RotatedKey


class CommandAccepted(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"commandId": "5d1f2c9e-3b7a-4e0f-8a21-6c4d9b0e7f12"}]}
    )
    command_id: str = Field(description="follow it at GET /v1/admin/commands/{command_id}")


class CommandStatus(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"commandId": "5d1f2c9e-3b7a-4e0f-8a21-6c4d9b0e7f12",
                          "accountId": "acct_42", "status": "rejected",
                          "reason": "insufficient-credits: 40 available"}]
        }
    )  # fmt: skip
    command_id: str
    account_id: str | None
    status: Literal["pending", "applied", "rejected"]
    reason: str | None


class NewAdminToken(CamelModel):
    token_id: str
    name: str
    secret: str = Field(description=SHOWN_ONCE)
    scopes: list[str]
    created_at: str | None


class AdminToken(CamelModel):
    token_id: str
    name: str
    scopes: list[str]
    created_at: str | None
    revoked_at: str | None
    active: bool


class AdminTokens(CamelModel):
    tokens: list[AdminToken]


class PriceVersion(WireModel):
    """A version of the price book, as the contract names it (snake_case)."""

    version: int = Field(description="0: the built-in book, in force before any version")
    effective_at: str | None
    builtin: bool
    default_credits: int
    prices: dict[str, int] = Field(description="endpoint → credits")


class PriceBook(WireModel):
    current: PriceVersion
    versions: list[PriceVersion]
