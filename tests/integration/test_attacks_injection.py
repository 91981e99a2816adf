"""Injection through events and commands, against the real API, writer and projector.

`test_injection_through_the_api` is the catalog's attack (tests/attacks/injection.py): every
payload in every free-text field over HTTP, refused (422) or stored verbatim, a bystander
unharmed, the dashboard rendering text only. The rest publishes straight to Kafka what the API
would refuse, as a producer with a bug (or a grudge) would: each record ends dead-lettered with
its code or stored verbatim, the writer keeps running, other accounts' events in between are
applied; and the CSV export of injected text is safe to open in a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.history.export import export_ledger
from tests.attacks.catalog import by_name
from tests.attacks.injection import PAYLOADS
from tests.attacks.live import LiveApi, assert_components_alive, live_api
from tests.messages import command, grant, usage
from tests.pipeline import Driver
from tests.servers import Servers

pytestmark = pytest.mark.integration
VICTIM, BYSTANDER = "inj_victim", "inj_bystander"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
async def api(servers: Servers) -> AsyncIterator[LiveApi]:
    async with live_api(servers) as live:
        await live.driver.commands(grant(VICTIM, 1000, "inj-g"), grant(BYSTANDER, 50, "inj-bg"))
        await live.driver.settled()
        yield live


async def test_injection_through_the_api(api: LiveApi) -> None:
    result = await by_name("injection").run(api.base_url, api.admin_token)
    assert result.tried > 0, result.detail
    assert result.held, result.detail
    assert_components_alive(api)


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


# (what, key, value, dead-letter code) published to the usage topic: each must dead-letter.
DEAD_USAGE: list[tuple[str, bytes, bytes, str]] = [
    ("sql in account_id", b"x'; DROP TABLE ledger_entries; --",
     raw(usage("x'; DROP TABLE ledger_entries; --", "d1")), "schema-invalid"),
    ("10 KB account_id", b"a" * 10_000, raw(usage("a" * 10_000, "d2")), "schema-invalid"),
    ("account_id not the key", VICTIM.encode(), raw(usage(BYSTANDER, "d3")), "key-mismatch"),
    ("invalid UTF-8", VICTIM.encode(),
     b'{"request_id": "\xff\xfe", "account_id": "inj_victim"}', "malformed-json"),
    ("invalid UTF-8 key", b"\xff\xfe", raw(usage(VICTIM, "d4")), "key-mismatch"),
    ("nested 10000 deep", VICTIM.encode(), b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
     "malformed-json"),
    ("lone surrogate", VICTIM.encode(), raw(usage(VICTIM, "d5", endpoint="a\ud800")),
     "malformed-json"),
    ("credits 2**70", VICTIM.encode(), raw(usage(VICTIM, "d6", credits=2**70)), "schema-invalid"),
    ("credits 1.5", VICTIM.encode(), raw(usage(VICTIM, "d7", credits=1.5)), "schema-invalid"),
    ("status as text", VICTIM.encode(), raw({**usage(VICTIM, "d8"), "status_code": "200"}),
     "schema-invalid"),
    # A field the contract does not name (`__proto__` too) is ignored, not refused (contract
    # v1.1, forward compatibility): see test_writer_plan's unknown-field test.
    ("129-char request_id", VICTIM.encode(), raw(usage(VICTIM, "r" * 129)), "schema-invalid"),
    ("empty record", VICTIM.encode(), b"", "malformed-json"),
]  # fmt: skip


async def publish_raw(api: LiveApi, key: bytes, value: bytes) -> None:
    """One record with exactly these key and value bytes (tests.pipeline encodes str keys)."""
    sent = await api.driver.producer.send(api.settings.usage_topic, value, key=key)
    await sent
    api.driver.published += 1


async def dead_letter_codes(api: LiveApi) -> dict[tuple[int, int], str]:
    rows = await api.driver.pool.fetch(
        "SELECT kafka_partition, kafka_offset, error_code FROM dead_letters WHERE topic = $1",
        api.settings.usage_topic,
    )
    return {(r["kafka_partition"], r["kafka_offset"]): r["error_code"] for r in rows}


async def count_consumed(api: LiveApi) -> None:
    """Count what others published (the API's ingest) as published, so `settled` waits for
    what this test publishes and not less."""
    consumed = await api.driver.pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets WHERE consumer = $1",
        api.settings.consumer_group,
    )
    api.driver.published = max(api.driver.published, int(consumed))


async def test_raw_records_dead_letter_with_their_code(api: LiveApi) -> None:
    driver = api.driver
    await count_consumed(api)
    before = await dead_letter_codes(api)
    for n, (_, key, value, _) in enumerate(DEAD_USAGE):
        await publish_raw(api, key, value)
        await driver.usage(usage(BYSTANDER, f"between-{n}", credits=1))
    await driver.settled()
    after = await dead_letter_codes(api)
    new = sorted(code for where, code in after.items() if where not in before)
    assert new == sorted(code for *_, code in DEAD_USAGE)
    consumed = [e for e in await driver.entries(BYSTANDER) if e["source"].startswith("request:b")]
    assert len(consumed) == len(DEAD_USAGE), "an event between the bad ones was not applied"
    assert_components_alive(api)


def dangerous_cells(text: str) -> list[str]:
    """Cells a spreadsheet would run as a formula: they start with = + - @ tab or CR and are
    not plain numbers."""
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    return [c for c in cells if c.startswith(FORMULA_START) and not _number(c)]


def _number(cell: str) -> bool:
    try:
        int(cell)
    except ValueError:
        return False
    return True


async def test_the_csv_export_of_injected_text_is_inert(api: LiveApi) -> None:
    account, driver = "inj_csv", api.driver
    await count_consumed(api)
    texts = list(PAYLOADS.values())
    await driver.commands(*(
        grant(account, 1, f"csv-g{i}", name=text, source=text, metadata={"k": text})
        for i, text in enumerate(texts)
    ))  # fmt: skip
    await driver.settled()
    await driver.usage(*(usage(account, f"{i}{text}"[:128], endpoint=text, key_id=text[:128],
                               credits=1) for i, text in enumerate(texts)))  # fmt: skip
    await driver.commands(command("adjustment", account, "csv-adj", amount=1, reason=texts[8]))
    await driver.settled()
    out = io.StringIO()
    written = await export_ledger(driver.pool, out, "csv", account_id=account)
    assert written == 2 * len(texts) + 1
    assert dangerous_cells(out.getvalue()) == []


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("usage", usage("nul_acct", "r1", endpoint="POST /a\x00b", credits=1)),
        ("usage", usage("nul_acct", "r\x002", credits=1)),
        ("usage", {**usage("nul_acct", "r3", credits=1), "x\x00": 1}),  # named in the error
        ("commands", grant("nul_acct", 5, "g-nul", name="a\x00b")),
        ("commands", grant("nul_acct", 5, "g-nul2", metadata={"k\x00": 1})),
    ],
    ids=["usage-endpoint", "usage-request-id", "usage-field-name", "grant-name", "metadata-key"],
)
async def test_nul_in_a_raw_record_is_dead_lettered(
    driver: Driver, topic: str, message: dict[str, Any]
) -> None:
    await driver.commands(grant("nul_acct", 10, "g-ok"), grant("nul_other", 10, "g-other"))
    await driver.settled()
    publish = driver.usage if topic == "usage" else driver.commands
    await publish(message)
    await driver.usage(usage("nul_other", "after", credits=1))  # must still be applied
    await driver.settled()
    codes = await driver.pool.fetch("SELECT error_code FROM dead_letters")
    assert [r["error_code"] for r in codes] == ["schema-invalid"]
    assert [e["reason"] for e in await driver.entries("nul_other")] == ["grant", "consume"]
