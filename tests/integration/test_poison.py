"""Poison cannot wedge a partition, on real Kafka and Postgres: records the writer cannot take
(instants past what UTC holds, huge numbers, deep nesting, odd unicode, wrong types, and a record
whose decision raises) are dead-lettered, and the valid calls behind them on the same partition
are charged, in order, by a writer that stays up."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from services.core import run as core_run
from services.core.model import AccountState, Command, ConsumeUsage, Event
from services.writer import plan as plan_module
from tests.messages import grant, usage
from tests.pipeline import Driver, read_topic

pytestmark = pytest.mark.integration
ACCOUNT = "acct_poison"


def raw(message: dict[str, Any]) -> tuple[str, bytes]:
    return ACCOUNT, json.dumps(message).encode()


def poison_usage() -> list[tuple[str, bytes]]:
    deep = b'{"request_id":' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [
        raw(usage(ACCOUNT, "u-late", occurred_at="9999-12-31T23:59:59-23:59")),
        raw(usage(ACCOUNT, "u-early", occurred_at="0001-01-01T00:00:00+01:00")),
        raw(usage(ACCOUNT, "u-huge", credits=2**63)),
        raw(usage(ACCOUNT, "u-latency", latency_ms=-(2**70))),
        raw(usage(ACCOUNT, "u-type", status_code="200")),
        raw(usage(ACCOUNT, "u-nested", endpoint={"a": [[[{"b": None}]]]})),
        raw(usage(ACCOUNT, "\u202e\ufeff😀" * 50)),  # 150 characters: too long an id
        (ACCOUNT, deep),
        (ACCOUNT, b"\xff\xfe not utf-8"),
    ]


def poison_commands() -> list[tuple[str, bytes]]:
    return [
        raw(grant(ACCOUNT, 5, "g-early", occurred_at="0001-01-01T00:00:00+01:00")),
        raw(grant(ACCOUNT, 5, "g-late", expires_at="9999-12-31T23:59:59-23:59")),
        raw(grant(ACCOUNT, 5, "g-priority", priority=2**63)),
    ]


async def test_extreme_instants_and_junk_are_dead_lettered_and_calls_behind_are_charged(
    driver: Driver,
) -> None:
    await driver.commands(grant(ACCOUNT, 1000, "g1"))
    await driver.settled()
    bad_usage, bad_commands = poison_usage(), poison_commands()
    await driver.usage(*bad_usage)
    await driver.commands(*bad_commands)
    await driver.usage(*(usage(ACCOUNT, f"r{n}", credits=n) for n in range(1, 6)))
    await driver.settled()  # fails at once, with its error, if the writer died

    entries = await driver.entries(ACCOUNT)
    assert [(e["seq"], e["source"], e["delta"]) for e in entries] == [
        (1, "grant:g1", 1000),
        *((n + 1, f"request:r{n}", -n) for n in range(1, 6)),
    ]
    assert (await driver.view(ACCOUNT))["balance"] == 1000 - 15
    dead = await driver.pool.fetch(
        "SELECT topic, error_code, error_message, raw_value FROM dead_letters"
        " ORDER BY topic, kafka_offset"
    )
    assert len(dead) == len(bad_usage) + len(bad_commands)
    by_value = {bytes(d["raw_value"]): d for d in dead}
    for _, value in bad_usage + bad_commands:
        assert by_value[value]["error_code"] in ("schema-invalid", "malformed-json")
    instants = [by_value[bad_usage[0][1]], by_value[bad_usage[1][1]], by_value[bad_commands[0][1]]]
    for letter in instants:
        assert letter["error_code"] == "schema-invalid"
        assert "occurred_at: the instant must lie between" in letter["error_message"]
    assert "expires_at: the instant" in by_value[bad_commands[1][1]]["error_message"]
    dlt = await read_topic(driver.settings, driver.settings.usage_topic + ".DLT", len(bad_usage))
    assert sorted(r.value for r in dlt) == sorted(value for _, value in bad_usage)


async def test_a_record_whose_decision_raises_is_dead_lettered_unprocessable(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deciding(
        state: AccountState, commands: Sequence[tuple[Command, datetime]]
    ) -> tuple[list[tuple[Event, ...]], AccountState]:
        for command, _ in commands:
            if isinstance(command, ConsumeUsage) and command.request_id.startswith("poison"):
                raise ZeroDivisionError("a bug no bound foresaw")
        return core_run.decide_run(state, commands)

    monkeypatch.setattr(plan_module, "decide_run", deciding)
    await driver.commands(grant(ACCOUNT, 100, "g1"))
    await driver.settled()
    poison = usage(ACCOUNT, "poison-1", credits=50)
    await driver.usage(
        usage(ACCOUNT, "r1", credits=1), poison, usage(ACCOUNT, "r2", credits=2), poison
    )
    await driver.settled()

    entries = await driver.entries(ACCOUNT)
    assert [(e["source"], e["balance_after"]) for e in entries] == [
        ("grant:g1", 100),
        ("request:r1", 99),
        ("request:r2", 97),
    ]
    dead = await driver.pool.fetch("SELECT * FROM dead_letters ORDER BY kafka_offset")
    assert [(d["error_code"], d["kafka_offset"]) for d in dead] == [
        ("unprocessable", 1),
        ("unprocessable", 3),  # the same poison again is poison again, not a duplicate
    ]
    assert dead[0]["error_message"] == (
        "deciding the record failed: ZeroDivisionError: a bug no bound foresaw"
    )
    seen = await driver.pool.fetchval(
        "SELECT count(*) FROM processed_requests WHERE request_id = 'poison-1'"
    )
    assert seen == 0  # it claimed nothing: a fixed writer may still apply it, once
    (first, _) = await read_topic(driver.settings, driver.settings.usage_topic + ".DLT", 2)
    headers = dict(first.headers)
    assert headers["dlt.error.code"] == b"unprocessable"
    assert first.value == json.dumps(poison).encode()
