"""Webhook pieces without I/O: the signature (and the docs' receiver agreeing with it), the
backoff schedule, which addresses are refused, the event body, the consumer group's name."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.ledger import ALERT_TYPES, AlertMessage
from services.core.model import AlertKind
from services.platform.settings import Settings
from services.webhooks.backoff import gives_up, retry_delay_s
from services.webhooks.payload import event_body
from services.webhooks.signing import new_secret, signature_header, verify
from services.webhooks.urls import RefusedUrl, is_public, parse_target

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
BODY = b'{"id":"acct_1:3:low_balance","type":"low_balance"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    secret = new_secret()
    header = signature_header(secret, 1_764_601_200, BODY)
    expected = hmac.new(secret.encode(), b"1764601200." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1764601200,v1={expected}"


def test_verify_refuses_tampering_other_secrets_and_old_timestamps() -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header(secret, now, BODY)
    assert verify(secret, header, BODY, now)
    assert not verify(secret, header, BODY + b" ", now)
    assert not verify(new_secret(), header, BODY, now)
    assert not verify(secret, header, BODY, now + 301)
    assert not verify(secret, "v1=" + header.split("v1=")[1], BODY, now)
    assert not verify(secret, "", BODY, now)
    rotated = f"{header},v1={'0' * 64}"
    assert verify(secret, rotated, BODY, now), "any matching v1 is enough"


def _docs_python_receiver() -> Any:
    text = DOCS.read_text()
    block = re.search(r"### Python\n\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/webhooks.md has a Python receiver"
    scope: dict[str, Any] = {}
    exec(compile(block.group(1), str(DOCS), "exec"), scope)
    return scope["verify_creditledger"]


def test_the_docs_python_receiver_verifies_what_the_worker_signs() -> None:
    verify_creditledger = _docs_python_receiver()
    secret = new_secret()
    header = signature_header(secret, int(time.time()), BODY)
    assert verify_creditledger(secret, header, BODY)
    assert not verify_creditledger(secret, header, BODY.replace(b"low", b"big"))
    stale = signature_header(secret, int(time.time()) - 3600, BODY)
    assert not verify_creditledger(secret, stale, BODY)


def test_the_backoff_starts_within_a_minute_and_retries_for_more_than_a_day() -> None:
    settings, rng = Settings(), random.Random(7)
    first, second = retry_delay_s(1, settings, rng), retry_delay_s(2, settings, rng)
    assert 4 <= first <= 6 and first + second < 60, "a restarting receiver waits seconds"
    delays = [retry_delay_s(n, settings, rng) for n in range(1, 200)]
    assert max(delays) <= settings.webhook_backoff_max_s * 1.2
    assert all(later >= 0.8 * settings.webhook_backoff_max_s for later in delays[20:])
    elapsed, tries = 0.0, 0
    while not gives_up(elapsed, delays[tries], settings):
        elapsed += delays[tries]
        tries += 1
    assert elapsed >= 24 * 3600 and tries > 10


def test_jitter_spreads_the_same_try() -> None:
    settings, rng = Settings(), random.Random(1)
    assert len({round(retry_delay_s(4, settings, rng), 3) for _ in range(20)}) > 10


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url", ["ftp://a.example/", "//a.example/x", "http://", "http://u:p@a.example/", "x" * 3000]
)
def test_urls_refused_by_shape(url: str) -> None:
    with pytest.raises(RefusedUrl):
        parse_target(url)


def test_a_target_has_its_default_port() -> None:
    assert parse_target("https://a.example/x").port == 443
    assert parse_target("http://[2606:4700::1]:8080/x").host == "2606:4700::1"


def test_the_event_body_is_the_contract_shape_with_the_alert_id() -> None:
    alert = AlertMessage(
        alert_id="acct_1:9:grant_expiring:g1", account_id="acct_1", type="grant_expiring",
        occurred_at=datetime(2026, 12, 1, 15, 0, tzinfo=UTC), available=70, ledger_seq=9,
        details={"grant_id": "g1", "expires_at": "2026-12-04T15:00:00+00:00", "remaining": 70},
    )  # fmt: skip
    event = json.loads(event_body(alert))
    assert event == {
        "id": "acct_1:9:grant_expiring:g1",
        "type": "grant_expiring",
        "createdAt": "2026-12-01T15:00:00Z",
        "accountId": "acct_1",
        "data": {
            "available": 70,
            "ledgerSeq": 9,
            "grantId": "g1",
            "expiresAt": "2026-12-04T15:00:00+00:00",
            "remaining": 70,
        },
    }
    assert event_body(alert) == event_body(alert), "the same bytes every time"


def test_every_core_alert_kind_is_a_webhook_event_type() -> None:
    assert {kind.value for kind in AlertKind} == set(ALERT_TYPES)


def test_the_consumer_group_is_the_workers_own() -> None:
    assert Settings().webhooks_consumer_group == "creditledger-webhooks"
    assert Settings(consumer_group="t-1.writer").webhooks_consumer_group == "t-1.webhooks"
    assert Settings(consumer_group="mine").webhooks_consumer_group == "mine-webhooks"
    assert Settings(webhooks_group="hooks").webhooks_consumer_group == "hooks"
