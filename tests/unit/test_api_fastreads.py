"""The fast path of balance and check (services/api/fastreads.py) answers byte for byte what the
FastAPI routes answer, and hands FastAPI every request it would not judge the same way.

Differential, in process, against a fake database: the same requests to the app and to the app
without the fast path's middleware; plus the JSON the routes wrote before (pydantic's
`dump_json` of the returned dict) against the orjson both write now.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter
from starlette.datastructures import QueryParams

from services.api import fastreads
from services.api.app import create_app
from services.api.fastreads import FastReads
from services.api.keys import new_secret, secret_hash
from services.core.model import AccountSettings, AccountState, Bucket, BucketKind
from services.core.snapshot import bucket_remaining, state_to_json
from services.platform.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _bucket(grant_id: str, remaining: int, **extra: Any) -> Bucket:
    fields: dict[str, Any] = {
        "grant_id": grant_id, "kind": BucketKind("purchased"), "priority": 0,
        "effective_at": T0, "expires_at": None, "granted_seq": 1, "remaining": remaining,
        "applies_to": None, "granted": remaining, "pending": 0, "source": "test",
    }  # fmt: skip
    return Bucket(**{**fields, **extra})


# A writer_accounts row as the state reads return it (reads/balance.py), here none.
STATE_COLUMNS = ("seq", "balance", "snapshot", "updated_at", "granted_total", "consumed_total",
                 "bucket_remaining")  # fmt: skip
STATES = {
    "rich": AccountState(
        "rich", seq=7, balance=1_000, buckets=(_bucket("g1", 1_000),),
        granted_total=1_000, consumed_total=0,
    ),
    "poor": AccountState(
        "poor", seq=3, balance=5, buckets=(_bucket("g2", 5),),
        settings=AccountSettings(credit_limit=20), granted_total=30, consumed_total=25,
    ),
    "scoped": AccountState(
        "scoped", seq=4, balance=50,
        buckets=(_bucket("g3", 50, applies_to=("/v1/scan",)),
                 _bucket("g4", 0, pending=9, granted=9,
                         effective_at=datetime.now(UTC) + timedelta(days=3))),
        granted_total=59, consumed_total=0,
    ),
}  # fmt: skip


@dataclass
class FakeDb:
    """Keys by secret hash, account states; records every statement it is sent."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # admin tokens by hash
    statements: list[str] = field(default_factory=list)

    def token(self, *scopes: str, revoked: bool = False) -> str:
        secret = "cl_adm_" + new_secret()[8:]
        self.tokens[secret_hash(secret)] = {
            "token_id": f"adm_{len(self.tokens)}", "scopes": list(scopes),
            "revoked_at": T0 if revoked else None,
        }  # fmt: skip
        return secret

    def key(
        self, account_id: str, *, revoked: bool = False, expires: datetime | None = None
    ) -> str:
        secret = new_secret()
        self.keys[secret_hash(secret)] = {
            "account_id": account_id, "key_id": f"key_{len(self.keys)}",
            "revoked_at": T0 if revoked else None, "expires_at": expires,
        }  # fmt: skip
        return secret

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeDb]:
        yield self

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        if "EXISTS" in sql:  # auth.ACCOUNT_EXISTS
            return args[0] in STATES
        state = STATES.get(args[0])
        return state.seq if state else 0

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        self.statements.append(sql)
        if "creditledger_key_state" in sql:
            key = self.keys.get(args[0])
            if key is None:
                return None
            state = self._state(key["account_id"]) if key["revoked_at"] is None else None
            return {**key, **(state or dict.fromkeys(STATE_COLUMNS))}
        if "FROM api_keys" in sql:
            return self.keys.get(args[0])
        if "FROM admin_tokens" in sql:
            return self.tokens.get(args[0])
        assert "creditledger_state" in sql, sql
        return self._state(args[0])

    async def fetch(self, sql: str, accounts: list[str]) -> list[dict[str, Any]]:
        self.statements.append(sql)
        assert "creditledger_states" in sql, sql  # reads/state_batches.py
        found = ((a, self._state(a)) for a in accounts)
        return [{"account": a, **state} for a, state in found if state is not None]

    def _state(self, account_id: str) -> dict[str, Any] | None:
        state = STATES.get(account_id)
        if state is None:
            return None
        snapshot = orjson.loads(orjson.dumps(state_to_json(state)))  # as the jsonb codec reads it
        return {
            "seq": state.seq, "balance": state.balance, "snapshot": snapshot, "updated_at": T0,
            "granted_total": state.granted_total, "consumed_total": state.consumed_total,
            "bucket_remaining": bucket_remaining(state),
        }  # fmt: skip


def _apps(db: FakeDb, **settings: Any) -> tuple[FastAPI, FastAPI]:
    limits = {"api_rate_limit_per_s": 1e6, "api_rate_limit_burst": 1_000_000}
    config = Settings.model_construct(**{**limits, **settings})
    fast = create_app(config, db, None)  # type: ignore[arg-type]
    plain = create_app(config, db, None)  # type: ignore[arg-type]
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not FastReads]  # type: ignore[comparison-overlap]
    return fast, plain


async def _get(app: FastAPI, url: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get(url, headers=headers)


def _same(fast: httpx.Response, plain: httpx.Response) -> None:
    assert fast.status_code == plain.status_code, (fast.text, plain.text)
    # Every answer has its own request id (a fresh one for each of the two requests).
    assert "x-request-id" in fast.headers and "x-request-id" in plain.headers

    def headers(answer: httpx.Response) -> list[tuple[str, str]]:
        return sorted(h for h in answer.headers.multi_items() if h[0] != "x-request-id")

    assert headers(fast) == headers(plain)
    assert fast.content == plain.content


BAD_CREDIT_QUERIES = (
    "cost=", "cost=-1", "cost=01", "cost=1e3", "cost=1.0", "cost=%2B5", "cost=+5", "cost= 5",
    f"cost={10**12 + 1}", "cost=99999999999999999999", "cost=1&cost=2", "cost=1&endpoint=",
    "cost=1&endpoint=" + "x" * 257, "cost=1&min_seq=-1", "cost=1&min_seq=x", "endpoint=/a",
    "cost=1&unknown=1", "cost=1&endpoint=%00", "cost=1;endpoint=/v1/scan", "cost",
)  # fmt: skip
GOOD_CREDIT_QUERIES = (
    "cost=0", "cost=1", "cost=5", "cost=6", "cost=25", "cost=26", "cost=1000", "cost=1001",
    f"cost={10**12}", "cost=10&endpoint=/v1/scan", "cost=55&endpoint=/v1/scan",
    "cost=10&endpoint=/v1/other", "cost=3&endpoint=" + quote("/ü/ä\u2028 x"),
    "endpoint=/v1/scan&cost=2", "cost=1&endpoint=" + "x" * 256, "cost=1&min_seq=0",
    "cost=1&endpoint=a+b", "&cost=4&",
)  # fmt: skip


def test_the_fast_path_answers_as_the_routes_do() -> None:
    async def run() -> None:
        db = FakeDb()
        secrets = {account: db.key(account) for account in (*STATES, "unknown_account")}
        fast, plain = _apps(db)
        for secret in secrets.values():
            headers = {"Authorization": f"Bearer {secret}"}
            for url in ("/v1/credits/balance", "/v1/credits/balance?min_seq=0",
                        *(f"/v1/credits/check?{q}" for q in GOOD_CREDIT_QUERIES)):  # fmt: skip
                for _ in range(2):  # a cache miss (one statement), then a hit
                    db.statements.clear()
                    answer = await _get(fast, url, headers)
                    assert len(db.statements) == 1, (url, db.statements)
                    _same(answer, await _get(plain, url, headers))

    asyncio.run(run())


def test_what_the_fast_path_does_not_judge_goes_to_the_routes() -> None:
    async def run() -> None:
        db = FakeDb()
        headers = {"x-api-key": db.key("rich")}
        fast, plain = _apps(db)
        for query in BAD_CREDIT_QUERIES:
            url = f"/v1/credits/check?{query}"
            _same(await _get(fast, url, headers), await _get(plain, url, headers))
        for url in ("/v1/credits/balance?min_seq=1", "/v1/credits/balance?x=1",
                    "/v1/credits/balance/", "/v1/credits/balancex"):  # fmt: skip
            _same(await _get(fast, url, headers), await _get(plain, url, headers))

    asyncio.run(run())


@pytest.mark.parametrize(
    "credential",
    ["none", "malformed", "unknown", "revoked", "expired", "admin-token"],
)
def test_refusals_are_the_routes_refusals(credential: str) -> None:
    async def run() -> None:
        db = FakeDb()
        secret = {
            "none": "", "malformed": "cl_live_" + "a" * 36, "unknown": new_secret(),
            "revoked": db.key("rich", revoked=True),
            "expired": db.key("rich", expires=datetime.now(UTC) - timedelta(seconds=1)),
            "admin-token": "adm_secret",
        }[credential]  # fmt: skip
        fast, plain = _apps(db, admin_token="adm_secret")
        for url in ("/v1/credits/balance", "/v1/credits/check?cost=1"):
            headers = {"Authorization": f"Bearer {secret}"} if secret else {}
            _same(await _get(fast, url, headers), await _get(plain, url, headers))
        cache = getattr(fast.state, "key_cache", None)
        assert cache is None or cache.get(secret_hash(secret)) is None  # never remembered

    asyncio.run(run())


def test_a_service_token_reads_as_the_accounts_own_key() -> None:
    async def run() -> None:
        db = FakeDb()
        token = db.token("credits:read")
        fast, plain = _apps(db)
        for account in STATES:
            own = {"Authorization": f"Bearer {db.key(account)}"}
            service = {"Authorization": f"Bearer {token}", "Creditledger-Account": account}
            for url in ("/v1/credits/balance", "/v1/credits/balance?min_seq=1",
                        *(f"/v1/credits/check?{q}" for q in GOOD_CREDIT_QUERIES)):  # fmt: skip
                answer = await _get(fast, url, service)
                _same(answer, await _get(plain, url, service))
                _same(answer, await _get(fast, url, own))

    asyncio.run(run())


@pytest.mark.parametrize(
    "case",
    ["no account", "unknown account", "malformed account", "lacking scope", "revoked",
     "two credentials", "the same credential twice", "customer key naming another"],
)  # fmt: skip
def test_service_token_refusals_are_the_routes_refusals(case: str) -> None:
    async def run() -> None:
        db = FakeDb()
        token, key = db.token("admin"), db.key("rich")
        service = {"Authorization": f"Bearer {token}"}
        headers = {
            "no account": service,
            "unknown account": {**service, "Creditledger-Account": "nobody"},
            "malformed account": {**service, "Creditledger-Account": "a b"},
            "lacking scope": {"Authorization": f"Bearer {db.token('commands:read')}",
                              "Creditledger-Account": "rich"},
            "revoked": {"Authorization": f"Bearer {db.token('admin', revoked=True)}",
                        "Creditledger-Account": "rich"},
            "two credentials": {**service, "x-api-key": key},
            "the same credential twice": {"Authorization": f"Bearer {key}", "x-api-key": key},
            "customer key naming another": {"x-api-key": key, "Creditledger-Account": "poor"},
        }[case]  # fmt: skip
        fast, plain = _apps(db)
        for url in ("/v1/credits/balance", "/v1/credits/check?cost=1"):
            answer = await _get(fast, url, headers)
            _same(answer, await _get(plain, url, headers))
            assert answer.status_code == (200 if case.startswith("the same") else
                                          {"unknown account": 404, "lacking scope": 403,
                                           "revoked": 403, "customer key naming another": 404}
                                          .get(case, 400)), answer.text  # fmt: skip

    asyncio.run(run())


def test_rate_limits_and_failed_attempts_count_once() -> None:
    async def run() -> None:
        db = FakeDb()
        headers = {"Authorization": f"Bearer {db.key('rich')}"}
        fast, plain = _apps(db, api_rate_limit_per_s=0.001, api_rate_limit_burst=2)
        for _ in range(3):  # two tokens, then 429 with Retry-After
            _same(await _get(fast, "/v1/credits/balance", headers),
                  await _get(plain, "/v1/credits/balance", headers))  # fmt: skip
        guess = {"Authorization": f"Bearer {new_secret()}"}
        for _ in range(4):  # two guesses allowed (the burst), then the address is blocked
            _same(await _get(fast, "/v1/credits/check?cost=1", guess),
                  await _get(plain, "/v1/credits/check?cost=1", guess))  # fmt: skip

    asyncio.run(run())


def test_the_fast_path_is_counted_under_the_routes_label() -> None:
    async def run() -> None:
        db = FakeDb()
        headers = {"Authorization": f"Bearer {db.key('rich')}"}
        fast, _ = _apps(db)
        assert (await _get(fast, "/v1/credits/check?cost=1", headers)).status_code == 200
        assert (await _get(fast, "/v1/credits/check?cost=5000", headers)).status_code == 402
        registry = fast.state.metrics.registry
        for status in ("200", "402"):
            labels = {"method": "GET", "route": "/v1/credits/check", "status": status}
            assert registry.get_sample_value("creditledger_http_requests_total", labels) == 1

    asyncio.run(run())


def test_the_query_is_read_as_starlette_reads_it() -> None:
    known = frozenset({"cost", "endpoint", "min_seq"})
    for query in (*GOOD_CREDIT_QUERIES, *BAD_CREDIT_QUERIES, "", "cost=1&&endpoint=%2Fa%2Fb"):
        raw = query.encode()
        ours = fastreads._query({"query_string": raw}, known)
        if ours is not None:
            assert ours == dict(QueryParams(raw)), query


ODD_TEXT = ["".join(map(chr, range(0x80))), "\u2028\u2029", "ü€😀", "\ufffd", '"\\/</script>']


@pytest.mark.parametrize("endpoint", ODD_TEXT)
def test_orjson_writes_what_the_routes_wrote_before(endpoint: str) -> None:
    body = {"allowed": True, "available": -(2**62), "cost": 10**12, "endpoint": endpoint,
            "owed": 0, "ledgerSeq": 2**62, "buckets": [{"kind": "x", "amount": 1}],
            "resetAt": None, "lastUpdated": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert orjson.dumps(body) == TypeAdapter(dict[str, Any]).dump_json(body)
