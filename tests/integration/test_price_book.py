"""The versioned price book on real Kafka and Postgres: the admin API, the writer pricing calls by
their occurred_at (versions read per batch), and a replay carrying the book in its manifest."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas.price_book import copy_versions, load_versions, seed_first_version
from services.core.pricing import PriceVersion
from services.demo import DEMO_PRICES
from services.history.replay import replay
from services.platform.settings import Settings
from tests.api_client import admin_headers, api_client
from tests.conftest import NamespaceFactory
from tests.messages import T0, at, grant, usage
from tests.pipeline import Driver

pytestmark = pytest.mark.integration
SCAN = "POST /v1/scanner/scan"
OTHER = "GET /v1/other"


def body(effective_at: datetime, **changes: Any) -> dict[str, Any]:
    return {"effective_at": effective_at.isoformat(), "default_credits": 2,
            "prices": {SCAN: 3}, **changes}  # fmt: skip


def error_fields(answer: Any) -> list[str]:
    return [e["field"] for e in answer.json()["errors"]]


async def test_versions_are_set_and_read_over_the_admin_api_and_never_start_in_the_past(
    driver: Driver,
) -> None:
    admin = admin_headers(driver.settings)
    async with api_client(driver.settings, driver.pool, driver.producer) as http:
        empty = (await http.get("/v1/admin/price-book", headers=admin)).json()
        assert empty["versions"] == []
        assert (empty["current"]["version"], empty["current"]["builtin"]) == (0, True)
        assert empty["current"]["prices"][SCAN] == 1

        soon = datetime.now(UTC) + timedelta(hours=1)
        first = await http.put("/v1/admin/price-book", json=body(soon), headers=admin)
        assert first.status_code == 201, first.text
        assert first.json()["version"] == 1
        later = body(soon + timedelta(days=1), default_credits=0, prices={})
        second = await http.put("/v1/admin/price-book", json=later, headers=admin)
        assert (second.status_code, second.json()["version"]) == (201, 2)

        skew = driver.settings.max_future_skew_s
        for refused in (
            datetime.now(UTC) - timedelta(days=1),  # the past
            datetime.now(UTC) + timedelta(seconds=skew / 2),  # inside the future skew
        ):
            answer = await http.put("/v1/admin/price-book", json=body(refused), headers=admin)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert error_fields(answer) == ["body.effective_at"]
        for bad, field in (
            (body(soon, prices={SCAN: -1}), f"body.prices.{SCAN}"),
            (body(soon, default_credits=1.5), "body.default_credits"),
            ({**body(soon), "effective_at": 1893456000}, "body.effective_at"),
            ({**body(soon), "version": 9}, "body.version"),
        ):
            answer = await http.put("/v1/admin/price-book", json=bad, headers=admin)
            assert answer.status_code == 422, answer.text
            assert error_fields(answer) == [field], answer.text
        assert (await http.put("/v1/admin/price-book", json=body(soon))).status_code == 401

        shown = (await http.get("/v1/admin/price-book", headers=admin)).json()
        assert [v["version"] for v in shown["versions"]] == [1, 2]
        assert shown["versions"][0] == {
            "version": 1, "effective_at": soon.isoformat().replace("+00:00", "Z"),
            "builtin": False, "default_credits": 2, "prices": {SCAN: 3},
        }  # fmt: skip
        assert shown["current"]["version"] == 0  # neither is in force yet

    for statement in (
        "UPDATE price_book_versions SET default_credits = 9",
        "DELETE FROM price_book_versions",
        "TRUNCATE price_book_versions",
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            await driver.pool.execute(statement)
    assert len(await _versions(driver.pool)) == 2


async def _versions(pool: asyncpg.Pool) -> tuple[PriceVersion, ...]:
    async with pool.acquire() as conn:
        return await load_versions(conn)


async def _charged(driver: Driver, account: str) -> dict[str, int]:
    rows = await driver.pool.fetch(
        "SELECT source, -sum(delta)::bigint AS credits FROM ledger_entries"
        " WHERE account_id = $1 AND reason = 'consume' GROUP BY source",
        account,
    )
    return {r["source"].removeprefix("request:"): r["credits"] for r in rows}


async def test_the_writer_prices_by_occurred_at_and_a_replay_prices_the_same(
    driver: Driver, make_namespace: NamespaceFactory
) -> None:
    # Versions that were set ahead of these (past) calls: written as the store holds them.
    v1 = PriceVersion(1, T0 + timedelta(minutes=10), default_credits=2, prices={SCAN: 3})
    v2 = PriceVersion(2, T0 + timedelta(minutes=20), default_credits=2, prices={SCAN: 4})
    async with driver.pool.acquire() as conn:
        await copy_versions(conn, [v1, v2])
    await driver.commands(grant("pb", 1000, "g"))
    await driver.usage(
        usage("pb", "v0", occurred_at=at(1)),  # before every version: the built-in book, 1
        usage("pb", "v1", occurred_at=at(10)),  # v1 from its first instant
        usage("pb", "v1-other", endpoint=OTHER, occurred_at=at(15)),  # v1's default
        usage("pb", "v2", occurred_at=at(20)),
        usage("pb", "own", credits=5, occurred_at=at(25)),  # its own credits under any book
        usage("pb", "late", occurred_at=at(5)),  # arrives last, priced by its own time: v0
        usage("pb", "failed", 503, occurred_at=at(21)),  # consumed at v2's price, refunded
    )
    await driver.settled()
    expected = {"v0": 1, "v1": 3, "v1-other": 2, "v2": 4, "own": 5, "late": 1, "failed": 4}
    assert await _charged(driver, "pb") == expected

    # A version committed while the writer runs is seen by its next batch (read per batch).
    v3 = PriceVersion(3, T0 + timedelta(minutes=30), default_credits=2, prices={SCAN: 7})
    async with driver.pool.acquire() as conn:
        await copy_versions(conn, [v3])
    await driver.usage(usage("pb", "v3", occurred_at=at(31)))
    await driver.settled()
    assert (await _charged(driver, "pb"))["v3"] == 7
    balance = await driver.pool.fetchval("SELECT balance FROM balance_view WHERE account_id='pb'")
    assert balance == 1000 - (1 + 3 + 2 + 4 + 5 + 1 + 7)

    fresh = await make_namespace()
    assert fresh.database_url is not None
    manifest = await replay(driver.settings, fresh.database_url)
    assert manifest.equal, manifest.differing_accounts
    assert [v["version"] for v in manifest.price_book] == [1, 2, 3]
    assert manifest.price_book[2]["prices"] == {SCAN: 7}
    replayed = await asyncpg.create_pool(fresh.database_url, min_size=1, max_size=1)
    assert replayed is not None
    try:
        assert [v.version for v in await _versions(replayed)] == [1, 2, 3]
    finally:
        await replayed.close()

    # Without the book the same log prices otherwise: the manifest's versions are what keep a
    # replay equal.
    bare = await make_namespace()
    assert bare.database_url is not None
    without = await replay(driver.settings, bare.database_url, price_versions=())
    assert without.differing_accounts == ["pb"]


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "CREDITLEDGER_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "CREDITLEDGER_DATABASE_URL": str(settings.database_url),
        "CREDITLEDGER_ADMIN_TOKEN": str(settings.admin_token),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_prices_set_and_show_from_the_command_line(
    namespace: Settings, tmp_path: Path
) -> None:
    good = tmp_path / "book.json"
    good.write_text(json.dumps(body(datetime.now(UTC) + timedelta(hours=2))))
    code, out, err = await _cli(namespace, "prices", "set", str(good))
    assert code == 0, err
    assert json.loads(out) == {"version": 1}
    past = tmp_path / "past.json"
    past.write_text(json.dumps(body(datetime.now(UTC) - timedelta(hours=2))))
    code, out, err = await _cli(namespace, "prices", "set", str(past))
    assert code == 2 and "effective_at" in err
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps(body(datetime.now(UTC) + timedelta(hours=2), prices={SCAN: -1})))
    code, out, err = await _cli(namespace, "prices", "set", str(negative))
    assert code == 2 and "prices" in err
    code, out, err = await _cli(namespace, "prices", "show")
    assert code == 0, err
    shown = json.loads(out)
    assert [v["version"] for v in shown["versions"]] == [1]
    assert shown["versions"][0]["prices"] == {SCAN: 3}
    assert shown["current"]["version"] == 0


async def test_the_demo_seeds_its_book_only_on_a_fresh_installation(driver: Driver) -> None:
    async with driver.pool.acquire() as conn:
        seeded = await seed_first_version(conn, DEMO_PRICES)
        assert seeded is not None and seeded.effective_at == DEMO_PRICES.effective_at
        assert await seed_first_version(conn, DEMO_PRICES) is None  # the book is not empty
    assert len(await _versions(driver.pool)) == 1
    await driver.usage(usage("d", "deep", endpoint="POST /v1/scanner/deep-scan"))
    await driver.settled()
    assert await _charged(driver, "d") == {"deep": DEMO_PRICES.prices["POST /v1/scanner/deep-scan"]}


async def test_no_seed_once_the_ledger_has_priced_a_call(driver: Driver) -> None:
    await driver.usage(usage("e", "first"))
    await driver.settled()
    async with driver.pool.acquire() as conn:
        assert await seed_first_version(conn, DEMO_PRICES) is None
    assert await _versions(driver.pool) == ()
