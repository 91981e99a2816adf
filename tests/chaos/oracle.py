"""The independent oracle: what the round published, and what the ledger must therefore hold.

It never asks the pipeline what it did. Every record the round sends goes through `Publisher`,
which records what it expects: a usage request or command applied once, or a dead letter with a
code at the exact (topic, partition, offset) Kafka acknowledged. Balances are plain arithmetic
over what was published: chaos rounds grant generously (effective since 2020, no expiry), so
every successful call is charged in full and a failed one nets to zero, whatever the order.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.platform.settings import Settings

SEND_ATTEMPTS = 30
SEND_BACKOFF_S = 0.5
RecordAddress = tuple[str, int, int]  # (topic, partition, offset)


@dataclass
class Expectations:
    balance: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # (account, request id) -> (canonical payload, net credits the request must come to)
    requests: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    commands: dict[tuple[str, str], str] = field(default_factory=dict)  # -> status
    dead: dict[RecordAddress, str] = field(default_factory=dict)  # -> dead-letter code
    sends_retried: int = 0


class Publisher:
    """Publishes a round's records and keeps the oracle's expectations in step."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings, self.producer = settings, producer
        self.expect = Expectations()
        self.published = 0

    async def usage(self, event: dict[str, Any], partition: int | None = None) -> None:
        """A usage event; the same event again is a redelivery and changes no expectation.

        `partition` sends it there instead of where the key's murmur2 hash puts it (a producer
        with another partitioner): the writer must forward it and still apply it once."""
        key = (event["account_id"], event["request_id"])
        canonical = json.dumps(event, sort_keys=True)
        known = self.expect.requests.get(key)
        assert known is None or known[0] == canonical, f"use `reused` for {key}"
        if known is None:
            net = -int(event["credits"]) if event["status_code"] < 400 else 0
            self.expect.requests[key] = (canonical, net)
            self.expect.balance[event["account_id"]] += net
        topic, account = self.settings.usage_topic, event["account_id"]
        await self._send(topic, account, json.dumps(event), partition=partition)

    async def usage_batch(self, events: list[dict[str, Any]], chunk: int = 200) -> None:
        """Many usage events, `chunk` sends in flight at a time (their order may interleave)."""
        for start in range(0, len(events), chunk):
            await asyncio.gather(*(self.usage(e) for e in events[start : start + chunk]))

    async def command(self, command: dict[str, Any], balance_delta: int = 0) -> None:
        """A command the round expects applied, moving the balance by `balance_delta`."""
        key = (command["account_id"], command["command_id"])
        if key not in self.expect.commands:
            self.expect.commands[key] = "applied"
            self.expect.balance[command["account_id"]] += balance_delta
            if command["type"] == "capture":  # a capture claims its request id, as a call does
                request = (command["account_id"], command["request_id"])
                self.expect.requests[request] = (json.dumps(command), balance_delta)
        await self._send(self.settings.commands_topic, command["account_id"], json.dumps(command))

    async def raw_usage(self, key: str, value: bytes, request_id: str, net: int) -> None:
        """A usage event sent byte for byte as given (a fuzzer's), expected applied once as
        request `request_id` of account `key`, netting `net` credits."""
        request = (key, request_id)
        assert request not in self.expect.requests, f"{request} already published"
        self.expect.requests[request] = (value.decode(errors="replace"), net)
        self.expect.balance[key] += net
        await self._send(self.settings.usage_topic, key, value)  # twice: a redelivery

    async def dead(self, topic: str, key: str | None, value: bytes | None, code: str) -> None:
        """A record the writer must dead-letter with `code`."""
        address = await self._send(topic, key, value, retry=False)
        self.expect.dead[address] = code

    async def _send(
        self, topic: str, key: str | None, value: str | bytes | None, *, retry: bool = True,
        partition: int | None = None,
    ) -> RecordAddress:  # fmt: skip
        raw = value.encode() if isinstance(value, str) else value
        for attempt in range(SEND_ATTEMPTS):
            try:
                encoded = key.encode() if key else None
                ack = await self.producer.send(topic, raw, key=encoded, partition=partition)
                metadata = await ack
            except KafkaError:
                # Unknown outcome (a broker restart, say): send again. A valid record twice is
                # a redelivery, which the writer must absorb; a record meant to die is never
                # retried, since its second copy would be a second dead letter.
                if not retry or attempt == SEND_ATTEMPTS - 1:
                    raise
                self.expect.sends_retried += 1
                await asyncio.sleep(SEND_BACKOFF_S)
                continue
            self.published += 1
            return (topic, metadata.partition, metadata.offset)
        raise AssertionError("unreachable: the last attempt raises")
