"""Admin HTTP API against a real writer and projector: commands end to end, Idempotency-Key,
auth and scopes, key rotation, validation, rate limits and body bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.platform.settings import Settings
from services.runtime import Running, running
from tests.messages import command, grant, usage
from tests.pipeline import Driver, wait_until

pytestmark = pytest.mark.integration
ACCOUNT = "acct_api"


@dataclass
class Api:
    http: httpx.AsyncClient
    settings: Settings
    pool: asyncpg.Pool
    driver: Driver
    admin: dict[str, str]

    async def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return await self.http.post(path, json=body, headers={**self.admin, **headers})

    async def command(self, path: str, body: Any = None, **headers: str) -> str:
        response = await self.post(f"/v1/admin/accounts/{ACCOUNT}/{path}", body, **headers)
        assert response.status_code == 202, response.text
        command_id: str = response.json()["commandId"]
        return command_id

    async def outcome(self, command_id: str) -> dict[str, Any]:
        """Wait until the writer decided the command; its status answer."""
        answer: dict[str, Any] = {}

        async def decided() -> bool:
            nonlocal answer
            response = await self.http.get(f"/v1/admin/commands/{command_id}", headers=self.admin)
            assert response.status_code == 200, response.text
            answer = response.json()
            return bool(answer["status"] != "pending")

        await wait_until(decided, f"command {command_id} to be processed", 60)
        return answer

    async def balance(self) -> asyncpg.Record:
        async def seen() -> bool:
            return await self.pool.fetchval(
                "SELECT w.seq = coalesce(b.last_seq, 0) FROM writer_accounts w"
                " LEFT JOIN balance_view b USING (account_id) WHERE w.account_id = $1",
                ACCOUNT,
            ) is True  # fmt: skip

        await wait_until(seen, "the balance view to catch up", 60)
        return await self.driver.view(ACCOUNT)


@pytest.fixture
async def pipeline(namespace: Settings) -> AsyncIterator[Running]:
    async with running(namespace, ("writer", "projector")) as handle:
        yield handle


async def make_api(handle: Running, settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings, handle.pool, handle.producer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        admin = {"Authorization": f"Bearer {settings.admin_token}"}
        api = Api(http, settings, handle.pool, Driver(settings, handle.pool, handle.producer),
                  admin)  # fmt: skip
        created = await api.post("/v1/admin/accounts", {"account_id": ACCOUNT, "name": "API"})
        assert created.status_code == 201, created.text
        yield api


@pytest.fixture
async def api(pipeline: Running, namespace: Settings) -> AsyncIterator[Api]:
    async for made in make_api(pipeline, namespace):
        yield made


def future(hours: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def test_each_command_applies_end_to_end(api: Api) -> None:
    grant_id = await api.command("grants", {"amount": 100, "bucket": "purchased", "name": "pack"})
    assert (await api.outcome(grant_id))["status"] == "applied"
    assert (await api.balance())["balance"] == 100

    adjusted = await api.command("adjustments", {"amount": -10, "reason": "goodwill reversal"})
    assert (await api.outcome(adjusted)) == {
        "commandId": adjusted, "accountId": ACCOUNT, "status": "applied", "reason": None,
    }  # fmt: skip
    hold = await api.command("holds", {"hold_id": "h1", "amount": 30, "expires_at": future()})
    assert (await api.outcome(hold))["status"] == "applied"
    view = await api.balance()
    assert (view["balance"], view["reserved"]) == (90, 30)

    captured = await api.command(
        "holds/h1/capture", {"amount": 20, "request_id": "cap-1", "endpoint": "POST /v1/scan"}
    )
    assert (await api.outcome(captured))["status"] == "applied"
    view = await api.balance()
    assert (view["balance"], view["reserved"]) == (70, 0)

    await api.command("holds", {"hold_id": "h2", "amount": 5, "expires_at": future()})
    released = await api.command("holds/h2/release")
    assert (await api.outcome(released))["status"] == "applied"
    assert (await api.balance())["reserved"] == 0

    refunded = await api.command("refunds", {"request_id": "cap-1", "amount": 5, "reason": "x"})
    assert (await api.outcome(refunded))["status"] == "applied"
    assert (await api.balance())["balance"] == 75

    settings = await api.command("settings", {"low_balance_threshold": 10, "credit_limit": 0})
    assert (await api.outcome(settings))["status"] == "applied"

    voided = await api.command(f"grants/{grant_id}/void")
    assert (await api.outcome(voided))["status"] == "applied"
    assert (await api.balance())["balance"] == 0
    reasons = [e["reason"] for e in await api.driver.entries(ACCOUNT)]
    assert reasons == ["grant", "adjustment", "hold", "release", "consume", "hold", "release",
                       "refund", "void"]  # fmt: skip


async def test_rejected_command_reports_the_writers_reason(api: Api) -> None:
    refund = await api.command("refunds", {"request_id": "never-seen"})
    answer = await api.outcome(refund)
    assert answer["status"] == "rejected"
    assert answer["reason"] and answer["reason"].split(":")[0].strip()
    by_account = await api.http.get(
        f"/v1/admin/commands/{refund}", params={"account_id": ACCOUNT}, headers=api.admin
    )
    assert by_account.json() == answer


async def test_status_of_an_unpublished_command(api: Api) -> None:
    unknown = await api.http.get("/v1/admin/commands/nope", headers=api.admin)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    in_account = await api.http.get(
        "/v1/admin/commands/nope", params={"account_id": ACCOUNT}, headers=api.admin
    )
    assert in_account.status_code == 404  # never published: not `pending` forever


async def decided(api: Api, account_id: str, command_id: str) -> None:
    async def found() -> bool:
        count = await api.pool.fetchval(
            "SELECT count(*) FROM processed_commands WHERE account_id = $1 AND command_id = $2",
            account_id,
            command_id,
        )
        return int(count) == 1

    await wait_until(found, f"the writer to decide {command_id}", components=api.driver.components)


async def status(api: Api, command_id: str, **params: str) -> httpx.Response:
    return await api.http.get(f"/v1/admin/commands/{command_id}", params=params, headers=api.admin)


async def test_status_finds_a_command_published_straight_to_kafka_by_id_alone(api: Api) -> None:
    await api.driver.commands(grant(ACCOUNT, 5, "kafka-g1"))
    await decided(api, ACCOUNT, "kafka-g1")
    answer = await status(api, "kafka-g1")
    assert (answer.status_code, answer.json()) == (200, {
        "commandId": "kafka-g1", "accountId": ACCOUNT, "status": "applied", "reason": None,
    })  # fmt: skip
    assert (await status(api, "kafka-g1", account_id=ACCOUNT)).json() == answer.json()
    assert (await status(api, "kafka-g1", account_id="acct_else")).status_code == 404

    refund = command("refund", ACCOUNT, "kafka-r1", request_id="never-seen")
    await api.driver.commands(refund)
    await decided(api, ACCOUNT, "kafka-r1")
    rejected = (await status(api, "kafka-r1")).json()
    assert (rejected["status"], rejected["accountId"]) == ("rejected", ACCOUNT)
    assert rejected["reason"]


async def test_status_of_a_dead_lettered_command_published_straight_to_kafka(api: Api) -> None:
    bad = grant(ACCOUNT, -5, "kafka-bad")  # schema-invalid: dead-lettered, never decided
    await api.driver.commands(bad)

    async def dead_lettered() -> bool:
        return bool(await api.pool.fetchval("SELECT count(*) FROM dead_letters"))

    await wait_until(dead_lettered, "the writer to dead-letter the command")
    answer = (await status(api, "kafka-bad")).json()
    assert (answer["status"], answer["accountId"]) == ("rejected", ACCOUNT)
    assert answer["reason"].startswith("schema-invalid: grant.amount")
    assert (await status(api, "kafka-bad", account_id="acct_else")).status_code == 404


async def test_one_command_id_in_two_accounts_needs_the_account(api: Api) -> None:
    await api.driver.commands(grant(ACCOUNT, 5, "shared-id"), grant("acct_two", 7, "shared-id"))
    await decided(api, ACCOUNT, "shared-id")
    await decided(api, "acct_two", "shared-id")
    assert (await status(api, "shared-id")).status_code == 409
    two = (await status(api, "shared-id", account_id="acct_two")).json()
    assert (two["accountId"], two["status"]) == ("acct_two", "applied")


async def test_a_command_the_api_sent_is_pending_until_the_writer_decides(
    namespace: Settings,
) -> None:
    async with running(namespace, ("projector",)) as no_writer:  # nothing decides it
        async for api in make_api(no_writer, namespace):
            published = await api.command("grants", {"amount": 3})
            assert (await status(api, published)).json() == {
                "commandId": published, "accountId": ACCOUNT, "status": "pending", "reason": None,
            }  # fmt: skip
            assert (await status(api, "never-sent")).status_code == 404


async def test_idempotency_key_replays_the_first_answer_and_publishes_once(api: Api) -> None:
    body = {"amount": 7, "source": "inv-1"}
    path = f"/v1/admin/accounts/{ACCOUNT}/grants"
    first = await api.post(path, body, **{"Idempotency-Key": "k-1"})
    second = await api.post(path, body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    command_id = first.json()["commandId"]
    # Concurrent duplicates of another key: one publish.
    racing = await asyncio.gather(
        *(api.post(path, {"amount": 3}, **{"Idempotency-Key": "k-2"}) for _ in range(5))
    )
    assert {r.status_code for r in racing} <= {202, 409}
    accepted = {r.content for r in racing if r.status_code == 202}
    assert len(accepted) == 1
    assert (await api.outcome(command_id))["status"] == "applied"
    await api.outcome(json_id(accepted.pop()))
    await api.driver.settled()
    assert (await api.balance())["balance"] == 10
    commands = await api.pool.fetchval(
        "SELECT count(*) FROM processed_commands WHERE account_id = $1", ACCOUNT
    )
    assert commands == 2
    assert len(await api.driver.entries(ACCOUNT)) == 2

    conflict = await api.post(path, {"amount": 8}, **{"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert conflict.json()["type"].endswith("/idempotency-key-reused")
    other_route = await api.post(
        f"/v1/admin/accounts/{ACCOUNT}/adjustments", {"amount": 7}, **{"Idempotency-Key": "k-1"}
    )
    assert other_route.status_code == 409


def json_id(content: bytes) -> str:
    return str(httpx.Response(200, content=content).json()["commandId"])


async def test_auth_failures_and_scopes(api: Api) -> None:
    path = f"/v1/admin/accounts/{ACCOUNT}/grants"
    missing = await api.http.post(path, json={"amount": 1})
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await api.http.post(path, json={"amount": 1}, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401

    key = (await api.post(f"/v1/admin/accounts/{ACCOUNT}/keys")).json()
    customer = {"Authorization": f"Bearer {key['secret']}"}
    assert (await api.http.get("/v1/credits/balance", headers=customer)).status_code == 200
    scoped = await api.http.post(path, json={"amount": 1}, headers=customer)
    assert scoped.status_code == 403
    assert scoped.json()["type"].endswith("/forbidden")

    malformed = await api.http.get("/v1/credits/balance", headers={"x-api-key": "cl_live_nope"})
    assert malformed.status_code == 401
    revoked = await api.http.delete(
        f"/v1/admin/accounts/{ACCOUNT}/keys/{key['keyId']}", headers=api.admin
    )
    assert revoked.status_code == 204
    after = await api.http.get("/v1/credits/balance", headers=customer)
    assert after.status_code == 403
    assert after.json()["type"].endswith("/key-revoked")


async def test_key_rotation_keeps_the_old_key_for_the_overlap(api: Api) -> None:
    old = (await api.post(f"/v1/admin/accounts/{ACCOUNT}/keys")).json()
    rotate = f"/v1/admin/accounts/{ACCOUNT}/keys/{old['keyId']}/rotate"
    rotated = await api.post(rotate)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["rotated"]["keyId"] == old["keyId"] and new["rotated"]["expiresAt"]
    for secret in (old["secret"], new["secret"]):
        answer = await api.http.get("/v1/credits/balance", headers={"x-api-key": secret})
        assert answer.status_code == 200
    # No overlap: the old key stops at once.
    newer = (await api.post(f"/v1/admin/accounts/{ACCOUNT}/keys/{new['keyId']}/rotate",
                            {"overlap_seconds": 0})).json()  # fmt: skip
    expired = await api.http.get("/v1/credits/balance", headers={"x-api-key": new["secret"]})
    assert expired.status_code == 403
    assert expired.json()["type"].endswith("/key-expired")
    fresh = await api.http.get("/v1/credits/balance", headers={"x-api-key": newer["secret"]})
    assert fresh.status_code == 200
    listed = (await api.http.get(f"/v1/admin/accounts/{ACCOUNT}/keys", headers=api.admin)).json()
    assert [k["active"] for k in listed["keys"]] == [True, False, True]
    again = await api.post(f"/v1/admin/accounts/{ACCOUNT}/keys/{new['keyId']}/rotate")
    assert again.status_code == 404


async def test_unknown_account_and_invalid_bodies(api: Api) -> None:
    unknown = await api.post("/v1/admin/accounts/nobody/grants", {"amount": 1})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    path = f"/v1/admin/accounts/{ACCOUNT}/grants"
    invalid = await api.post(path, {"amount": "ten", "bucket": "gold"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in invalid.json()["errors"]}
    assert {"body.amount", "body.bucket"} <= fields
    smuggled = await api.post(path, {"amount": 1, "account_id": "other"})
    assert smuggled.status_code == 422
    assert smuggled.json()["errors"][0]["field"] == "body.account_id"
    zero = await api.post(f"/v1/admin/accounts/{ACCOUNT}/adjustments", {"amount": 0})
    assert [e["field"] for e in zero.json()["errors"]] == ["body.amount"]
    malformed = await api.http.post(
        path, content=b"{not json", headers={**api.admin, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    naive_time = await api.post(path, {"amount": 1, "expires_at": "2030-01-01T00:00:00"})
    assert naive_time.status_code == 422
    assert naive_time.json()["errors"][0]["field"] == "body.expires_at"


async def test_oversized_body_is_refused_before_parsing(api: Api) -> None:
    path = f"/v1/admin/accounts/{ACCOUNT}/grants"
    big = b'{"amount": 1, "name": "' + b"x" * (api.settings.api_max_body_bytes + 1) + b'"}'
    declared = await api.http.post(path, content=big, headers=api.admin)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = await api.http.post(path, content=chunks(), headers=api.admin)
    assert streamed.status_code == 413


async def test_rate_limit_answers_429_with_retry_after(
    pipeline: Running, namespace: Settings
) -> None:
    tight = namespace.model_copy(update={"api_rate_limit_per_s": 0.2, "api_rate_limit_burst": 3})
    async for api in make_api(pipeline, tight):  # creating the account took one token
        statuses = []
        for _ in range(3):
            response = await api.http.get(f"/v1/admin/accounts/{ACCOUNT}/keys", headers=api.admin)
            statuses.append(response.status_code)
        assert statuses == [200, 200, 429]
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1

        # Failed authentication is limited per client IP, whatever the credential tried.
        tries = [
            (await api.http.get("/v1/credits/balance", headers={"x-api-key": f"bad{i}"}))
            for i in range(4)
        ]
        assert [t.status_code for t in tries] == [401, 401, 401, 429]
        assert int(tries[-1].headers["retry-after"]) >= 1
        metrics = (await api.http.get("/metrics")).text
        assert 'creditledger_http_rate_limited_total{limit="caller"} 1.0' in metrics
        assert 'creditledger_http_rate_limited_total{limit="failed_auth"} 1.0' in metrics


async def test_usage_refund_through_the_api(api: Api) -> None:
    grant_id = await api.command("grants", {"amount": 10})
    assert (await api.outcome(grant_id))["status"] == "applied"
    await api.driver.usage(usage(ACCOUNT, "req-1", credits=4, occurred_at=future(0)))

    async def consumed() -> bool:
        return bool(await api.pool.fetchval(
            "SELECT count(*) FROM processed_requests WHERE account_id = $1", ACCOUNT
        ))  # fmt: skip

    await wait_until(consumed, "the usage event to be consumed", 60)
    assert (await api.balance())["balance"] == 6
    refunded = await api.command("refunds", {"request_id": "req-1"})
    assert (await api.outcome(refunded))["status"] == "applied"
    assert (await api.balance())["balance"] == 10
    twice = await api.command("refunds", {"request_id": "req-1"})
    assert (await api.outcome(twice))["status"] == "rejected"
