"""The skeleton's path on real Kafka and Postgres: usage and grants in, ledger and balance out."""

from __future__ import annotations

import json

import pytest

from services.platform.settings import Settings
from services.runtime import running
from tests.messages import grant, usage
from tests.pipeline import (
    publish,
    read_topic,
    wait_for_consumed,
    wait_for_view_seq,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_usage_and_grants_become_ledger_entries_and_balance(namespace: Settings) -> None:
    async with running(namespace, ("writer", "projector")) as pipeline:
        await publish(pipeline.producer, namespace.commands_topic, [grant("acct_a", 1000, "g1")])
        await wait_for_view_seq(pipeline.pool, "acct_a", 1)
        calls = [usage("acct_a", f"r{n}", credits=5) for n in range(10)]
        calls += [usage("acct_a", "r-fail-5xx", 503, credits=3)]
        calls += [usage("acct_a", "r-fail-4xx", 404, credits=3)]
        calls += [usage("acct_a", "r-free", credits=0)]
        calls += [usage("acct_a", "r-priced", endpoint="POST /v1/scanner/deep-scan")]
        duplicates = calls[:3]
        await publish(pipeline.producer, namespace.usage_topic, calls + duplicates)
        # 1 grant + 10 consumes + 2 × (consume, refund) + 1 priced consume; the free call and
        # the duplicates write nothing.
        await wait_for_view_seq(pipeline.pool, "acct_a", 16)
        await wait_for_consumed(pipeline.pool, namespace, 1 + len(calls) + len(duplicates))
        entries = await pipeline.pool.fetch(
            "SELECT * FROM ledger_entries WHERE account_id = 'acct_a' ORDER BY seq"
        )
        view = await pipeline.pool.fetchrow(
            "SELECT * FROM balance_view WHERE account_id = 'acct_a'"
        )

    assert [e["seq"] for e in entries] == list(range(1, 17))
    running_balance = 0
    for entry in entries:
        running_balance += entry["delta"]
        assert entry["balance_after"] == running_balance
    assert running_balance == 1000 - 10 * 5 - 5
    assert view is not None
    assert (view["balance"], view["granted_total"], view["consumed_total"]) == (945, 1000, 55)
    refunds = [e for e in entries if e["reason"] == "refund"]
    assert sorted(e["metadata"]["reason"] for e in refunds) == ["client_error", "server_error"]
    assert {e["source"] for e in refunds} == {"refund:r-fail-5xx", "refund:r-fail-4xx"}
    assert {e["bucket_grant_id"] for e in entries} == {"g1"}


async def test_ledger_topic_carries_every_entry_once_committed(namespace: Settings) -> None:
    async with running(namespace, ("writer", "projector")) as pipeline:
        await publish(pipeline.producer, namespace.commands_topic, [grant("acct_b", 50, "g1")])
        # Across the two input topics, order is the writer's reading order: let the grant land.
        await wait_for_view_seq(pipeline.pool, "acct_b", 1)
        await publish(pipeline.producer, namespace.usage_topic, [usage("acct_b", "r1", credits=7)])
        await wait_for_view_seq(pipeline.pool, "acct_b", 2)

        async def outbox_drained() -> bool:
            return int(await pipeline.pool.fetchval("SELECT count(*) FROM outbox")) == 0

        # The projector can see a message before the relay's delete commits: wait for it.
        await wait_until(outbox_drained, "the outbox relay to delete what it published")
    records = await read_topic(namespace, namespace.ledger_topic, 2)
    messages = sorted((json.loads(r.value) for r in records), key=lambda m: m["seq"])
    assert [(m["seq"], m["reason"], m["delta"], m["balance_after"]) for m in messages] == [
        (1, "grant", 50, 50),
        (2, "consume", -7, 43),
    ]
    assert {r.key for r in records} == {b"acct_b"}
    assert messages[1]["source"] == "request:r1"
    assert messages[1]["bucket"]["grant_id"] == "g1"


async def test_bad_input_is_dead_lettered_with_its_original_bytes(namespace: Settings) -> None:
    bad: list[tuple[str, bytes]] = [
        ("acct_c", b"{not json"),
        (
            "acct_c",
            json.dumps({**usage("acct_c", "r-x", credits=1), "status_code": "200"}).encode(),
        ),
        ("acct_c", json.dumps(usage("acct_c", "r-neg", credits=-4)).encode()),
        ("acct_other", json.dumps(usage("acct_c", "r-key", credits=1)).encode()),
    ]
    async with running(namespace, ("writer", "projector")) as pipeline:
        await publish(pipeline.producer, namespace.commands_topic, [grant("acct_c", 100, "g1")])
        await wait_for_view_seq(pipeline.pool, "acct_c", 1)
        await publish(pipeline.producer, namespace.usage_topic, [usage("acct_c", "r1", credits=2)])
        await publish(pipeline.producer, namespace.usage_topic, bad)
        reused = usage("acct_c", "r1", credits=9)  # same request_id, another payload
        await publish(pipeline.producer, namespace.usage_topic, [reused])
        await publish(pipeline.producer, namespace.usage_topic, [usage("acct_c", "r2", credits=3)])
        await wait_for_view_seq(pipeline.pool, "acct_c", 3)
        await wait_for_consumed(pipeline.pool, namespace, 1 + 1 + len(bad) + 1 + 1)
        dead = await pipeline.pool.fetch("SELECT * FROM dead_letters ORDER BY kafka_offset")
        balance = await pipeline.pool.fetchval(
            "SELECT balance FROM balance_view WHERE account_id = 'acct_c'"
        )
    assert balance == 100 - 2 - 3
    codes = sorted(d["error_code"] for d in dead)
    assert codes == sorted(
        ["malformed-json", "schema-invalid", "schema-invalid", "key-mismatch", "request-id-reused"]
    )
    dlt = await read_topic(namespace, namespace.usage_topic + ".DLT", len(dead))
    assert sorted(r.value for r in dlt) == sorted(
        [value for _, value in bad] + [json.dumps(reused).encode()]
    )
    headers = {name: value for name, value in dlt[0].headers}
    assert headers["dlt.original.topic"] == namespace.usage_topic.encode()
    assert {"dlt.error.code", "dlt.error.message", "dlt.original.offset"} <= set(headers)
    mistyped = next(d for d in dead if b'"status_code": "200"' in d["raw_value"])
    assert mistyped["error_message"].startswith("status_code: ")


async def test_restart_resumes_from_stored_offsets_without_double_counting(
    namespace: Settings,
) -> None:
    first = [usage("acct_d", f"r{n}", credits=1) for n in range(20)]
    second = [usage("acct_d", f"r{n}", credits=1) for n in range(20, 50)]
    async with running(namespace, ("writer", "projector")) as pipeline:
        await publish(pipeline.producer, namespace.commands_topic, [grant("acct_d", 500, "g1")])
        await wait_for_view_seq(pipeline.pool, "acct_d", 1)
        await publish(pipeline.producer, namespace.usage_topic, first)
        await wait_for_view_seq(pipeline.pool, "acct_d", 21)
        # Stopped here; what follows is published while no writer runs.
        await publish(pipeline.producer, namespace.usage_topic, second + first)
    async with running(namespace, ("writer", "projector")) as pipeline:
        await wait_for_view_seq(pipeline.pool, "acct_d", 51)
        await wait_for_consumed(pipeline.pool, namespace, 1 + 20 + 30 + 20)
        count = await pipeline.pool.fetchval("SELECT count(*) FROM ledger_entries")
        balance = await pipeline.pool.fetchval(
            "SELECT balance FROM balance_view WHERE account_id = 'acct_d'"
        )
    assert (count, balance) == (51, 500 - 50)
