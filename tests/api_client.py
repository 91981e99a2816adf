"""HTTP API test helpers: the app served in-process, accounts with keys, authorised clients.

async with api_client(settings, pool, producer) as http:
    acme = await new_customer(http, settings, "acme")
    balance = await http.get("/v1/credits/balance", headers=acme.headers)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.api.app import create_app
from services.platform.settings import Settings

BASE_URL = "http://test"


def admin_headers(settings: Settings) -> dict[str, str]:
    assert settings.admin_token is not None, "the namespace has no admin token"
    return {"Authorization": f"Bearer {settings.admin_token}"}


def key_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@asynccontextmanager
async def api_client(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> AsyncIterator[httpx.AsyncClient]:
    """The full API app (`create_app`) served in this process, no headers set."""
    app = create_app(settings, pool, producer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30) as http:
        yield http


@dataclass(frozen=True)
class Customer:
    """An account created through the admin API, with one customer key."""

    account_id: str
    key_id: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return key_headers(self.secret)


async def new_customer(
    http: httpx.AsyncClient, settings: Settings, account_id: str, name: str | None = None
) -> Customer:
    """`POST /v1/admin/accounts` then `POST /v1/admin/accounts/{id}/keys`."""
    admin = admin_headers(settings)
    created = await http.post(
        "/v1/admin/accounts",
        json={"account_id": account_id, "name": name or account_id},
        headers=admin,
    )
    assert created.status_code in (200, 201), created.text
    key = await http.post(f"/v1/admin/accounts/{account_id}/keys", headers=admin)
    assert key.status_code == 201, key.text
    body = key.json()
    return Customer(account_id, body["keyId"], body["secret"])
