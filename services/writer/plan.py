"""Plan one partition batch: decoded records + loaded state -> everything to write. No I/O.

The store loads `states` (with the refund lineage the batch needs) and `seen` for the batch in a
few queries, this module decides, and the store writes the plan in one transaction with the
batch's offset advance.

A record whose decision raises (a bug, or input no bound foresaw) is dead-lettered alone, code
`unprocessable`, and the batch is planned again without it: the records before and behind it,
of its account and every other, are decided as if it had never arrived, so the outcome does not
depend on where the batch boundaries fell. Nothing it claimed (its ids) is kept.

A record on another partition than its account's (the murmur2 partition of its account id, as
Kafka's Java client and aiokafka compute it) is not applied where it landed: it becomes a
`Forward`, an outbox row that republishes it, unchanged, on its account's partition of the same
topic, where it is applied in order with the rest of its account (`home_partition`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache

from services.core.model import (
    AccountState,
    AlertRaised,
    CaptureHold,
    CommandRejected,
    ConsumeUsage,
    EntryReason,
    Event,
    LedgerEntry,
    RefundRequest,
)
from services.core.run import decide_run
from services.core.usage import usage_credits
from services.core.value import value_type
from services.writer.decoding import DeadLetterCode, Decoded, IdKind, Rejected, printable_text

SeenKey = tuple[IdKind, str, str]  # (kind, account_id, idempotency id)
log = logging.getLogger("creditledger.writer")
FORWARDED_FROM_HEADER = "creditledger.forwarded.from"


@value_type
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    # When the record entered the Kafka log: the ledger's `recorded_at`, so that consuming the
    # same log again writes the same entries, byte for byte.
    log_time: datetime
    decoded: Decoded | Rejected
    # How many partitions the record's topic has, from the consumer's metadata; None when
    # unknown (the record is then applied where it landed).
    partition_count: int | None = None


@lru_cache(maxsize=200_000)  # the hash is pure Python; the same accounts come back every batch
def home_partition(account_id: str, partition_count: int) -> int:
    """The partition Kafka's default partitioner (Java's, aiokafka's) gives a record keyed by
    `account_id`, murmur2(key) & 0x7fffffff % count:
    `DefaultPartitioner()(key, range(partition_count), ())` (tests/unit/test_writer_murmur2.py
    holds the two equal), with the hash computed a word at a time."""
    return (murmur2(account_id.encode()) & 0x7FFFFFFF) % partition_count


_M = 0x5BD1E995
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """aiokafka's (and Java's) murmur2 of `data`, unsigned: the same value, with the words read
    by struct rather than assembled byte by byte (at 100,000 accounts a cold writer hashes
    each account once, and the byte-wise version cost 5 % of its time)."""
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:body]):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[body + 2] << 16
    if extra >= 2:
        h ^= data[body + 1] << 8
    if extra >= 1:
        h = ((h ^ data[body]) * _M) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def misrouted(record: InputRecord) -> int | None:
    """The account's partition when the record is not on it (forward it there), else None.

    Only decoded records are routed: a record whose key is not its account_id is a dead letter
    (`key-mismatch`), and a record without a key is routed by its account_id."""
    decoded, count = record.decoded, record.partition_count
    if not isinstance(decoded, Decoded) or count is None or count <= 0:
        return None
    home = home_partition(decoded.account_id, count)
    return None if home == record.partition else home


@value_type
class Forward:
    """A misrouted record, republished through the outbox to partition `to` of its topic."""

    record: InputRecord
    account_id: str
    to: int

    @property
    def origin(self) -> str:
        """Where it came from, "topic/partition/offset": the value of FORWARDED_FROM_HEADER."""
        return f"{self.record.topic}/{self.record.partition}/{self.record.offset}"

    def headers(self) -> list[tuple[str, bytes]]:
        """The record's own headers (an earlier forward's origin replaced), then its origin."""
        own = [(n, v) for n, v in self.record.headers if n != FORWARDED_FROM_HEADER]
        return [*own, (FORWARDED_FROM_HEADER, self.origin.encode())]


@value_type
class DeadLetter:
    record: InputRecord
    code: DeadLetterCode
    message: str

    @property
    def account_id(self) -> str:
        decoded = self.record.decoded
        if isinstance(decoded, Decoded):
            return decoded.account_id
        return printable_text((self.record.key or b"").decode("utf-8", errors="replace")[:128])


@value_type
class ProcessedId:
    kind: IdKind
    account_id: str
    idempotency_id: str
    payload_sha256: bytes
    first_seq: int | None
    rejection: CommandRejected | None = None
    # The last entry the command wrote: its consumes lie in first_seq .. last_seq, which is how a
    # later refund finds them (services/platform/request_entries.py, migration 0022).
    last_seq: int | None = None


TrafficKey = tuple[str, str, date]  # (account_id, endpoint, UTC day)


@dataclass(slots=True)
class Traffic:
    """What a batch adds to one `endpoint_usage` row: the accepted calls, free ones included,
    and the credits of the entries it writes, net of refunds (services/core/usage.py)."""

    requests: int = 0
    successful: int = 0
    failed: int = 0
    latency_ms_total: int = 0
    latency_samples: int = 0
    latency_ms_max: int = 0
    credits: int = 0

    def count(self, usage: ConsumeUsage) -> None:
        self.requests += 1
        if usage.status_code >= 400:
            self.failed += 1
        else:
            self.successful += 1
        if usage.latency_ms is not None:
            self.latency_ms_total += usage.latency_ms
            self.latency_samples += 1
            self.latency_ms_max = max(self.latency_ms_max, usage.latency_ms)

    def count_capture(self) -> None:
        self.requests += 1
        self.successful += 1


@dataclass(slots=True)
class BatchPlan:
    entries: list[LedgerEntry] = field(default_factory=list)
    alerts: list[AlertRaised] = field(default_factory=list)
    states: dict[str, AccountState] = field(default_factory=dict)
    processed: list[ProcessedId] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    traffic: dict[TrafficKey, Traffic] = field(default_factory=dict)
    forwards: list[Forward] = field(default_factory=list)
    duplicates: int = 0


def lineage_keys(decoded: Decoded) -> list[tuple[str, str]]:
    """(account_id, request_id) pairs whose consume lineage deciding this record needs."""
    command = decoded.command
    if isinstance(command, RefundRequest | CaptureHold):
        return [(command.account_id, command.request_id)]
    return []


def seen_keys(decoded: Decoded) -> list[SeenKey]:
    """Idempotency ids this record claims: its own, and a capture's request id."""
    keys: list[SeenKey] = [(decoded.id_kind, decoded.account_id, decoded.idempotency_id)]
    if isinstance(decoded.command, CaptureHold):
        keys.append((IdKind.REQUEST, decoded.account_id, decoded.command.request_id))
    return keys


def plan_batch(
    records: Sequence[InputRecord],
    states: Mapping[str, AccountState],
    seen: Mapping[SeenKey, bytes],
) -> BatchPlan:
    """Records in offset order; `states` holds every account the batch names."""
    unprocessable: dict[int, str] = {}  # index in `records` -> why deciding it failed
    while True:
        try:
            return _plan(records, states, seen, unprocessable)
        except _Unprocessable as poison:
            # Planned again without them: the ids they claimed must not count against later
            # records. Each pass sets at least one more record aside, so this ends; in practice
            # in two passes (a third only when a record reusing a poison's id is poison too).
            unprocessable.update(poison.records)


class _Unprocessable(Exception):
    def __init__(self, records: dict[int, str]) -> None:
        super().__init__(f"{len(records)} records cannot be decided")
        self.records = records


Run = list[tuple[int, Decoded, datetime]]  # (index in the batch, decoded, recorded_at)


def _plan(
    records: Sequence[InputRecord],
    states: Mapping[str, AccountState],
    seen: Mapping[SeenKey, bytes],
    unprocessable: Mapping[int, str],
) -> BatchPlan:
    plan = BatchPlan(states=dict(states))
    seen_now: dict[SeenKey, bytes] = dict(seen)
    # Whether a record applies depends on ids alone, never on account state: sort them out in
    # order first, then decide each account's run in one fold (accounts are independent).
    runs: dict[str, Run] = {}
    for index, record in enumerate(records):
        decoded = record.decoded
        if isinstance(decoded, Rejected):
            plan.dead_letters.append(DeadLetter(record, decoded.code, decoded.message))
            continue
        if (home := misrouted(record)) is not None:
            # Not applied here, nor its ids claimed: its copy is, on its account's partition.
            plan.forwards.append(Forward(record, decoded.account_id, home))
            continue
        if (why := unprocessable.get(index)) is not None:
            plan.dead_letters.append(DeadLetter(record, DeadLetterCode.UNPROCESSABLE, why))
            continue
        own_key, *other_keys = seen_keys(decoded)
        earlier = seen_now.get(own_key)
        if earlier == decoded.payload_sha256:
            plan.duplicates += 1
            continue
        if earlier is not None:
            plan.dead_letters.append(DeadLetter(record, _reuse_code(decoded), _reuse_text(decoded)))
            continue
        if taken := [k for k in other_keys if k in seen_now]:
            kind, _, taken_id = taken[0]  # a capture's request id already names a consume
            text = f"{kind.value} id {taken_id!r} was already used"
            plan.dead_letters.append(DeadLetter(record, DeadLetterCode.REQUEST_ID_REUSED, text))
            continue
        runs.setdefault(decoded.account_id, []).append((index, decoded, record.log_time))
        for key in (own_key, *other_keys):
            seen_now[key] = decoded.payload_sha256
    poison: dict[int, str] = {}
    for account_id, run in runs.items():
        decided = _decide(plan.states[account_id], run)
        if isinstance(decided, dict):
            poison.update(decided)
            continue
        results, plan.states[account_id] = decided
        for (_, decoded, _), events in zip(run, results, strict=True):
            _record(plan, decoded, events)
    if poison:
        raise _Unprocessable(poison)
    return plan


def _decide(
    state: AccountState, run: Run
) -> tuple[list[tuple[Event, ...]], AccountState] | dict[int, str]:
    """`decide_run` over the account's run, or, when that raises, the records whose decision
    raises (index -> why), found deciding one record at a time: the same decisions as the fold
    (decide_run's property), a failed record leaving the state as it was."""
    try:
        return decide_run(state, [(decoded.command, at) for _, decoded, at in run])
    except Exception:  # whatever it was, the offenders are found below
        account_id = run[0][1].account_id
        log.warning("deciding a run of account %s failed; one record at a time", account_id)
    results: list[tuple[Event, ...]] = []
    poison: dict[int, str] = {}
    for index, decoded, at in run:
        try:
            (events,), state = decide_run(state, [(decoded.command, at)])
        except Exception as error:  # dead-lettered, the error named
            log.exception(
                "%s id %r of account %s cannot be decided: dead-lettered (unprocessable)",
                decoded.id_kind.value, decoded.idempotency_id, decoded.account_id,
            )  # fmt: skip
            poison[index] = _describe(error)
            continue
        results.append(events)
    return poison or (results, state)  # no poison: only the fold failed, each record decided


def _describe(error: Exception) -> str:
    return printable_text(f"deciding the record failed: {type(error).__name__}: {error}")[:500]


def _record(plan: BatchPlan, decoded: Decoded, events: tuple[Event, ...]) -> None:
    """What one applied record adds to the plan: entries, alerts, its id, its traffic."""
    entries: list[LedgerEntry]
    rejection: CommandRejected | None
    if len(events) == 1 and type(events[0]) is LedgerEntry:  # a plain call's one entry
        entries, rejection = [events[0]], None
    else:
        entries = [e for e in events if isinstance(e, LedgerEntry)]
        plan.alerts.extend(e for e in events if isinstance(e, AlertRaised))
        rejection = next((e for e in events if isinstance(e, CommandRejected)), None)
    plan.entries.extend(entries)
    for entry in entries:
        _add_credits(plan, entry)
    first_seq = entries[0].seq if entries else None
    last_seq = entries[-1].seq if entries else None
    plan.processed.append(
        ProcessedId(
            decoded.id_kind,
            decoded.account_id,
            decoded.idempotency_id,
            decoded.payload_sha256,
            first_seq,
            rejection,
            last_seq=last_seq,
        )
    )
    command = decoded.command
    if isinstance(command, ConsumeUsage):
        key = (command.account_id, command.endpoint, command.occurred_at.astimezone(UTC).date())
        plan.traffic.setdefault(key, Traffic()).count(command)
    if isinstance(command, CaptureHold) and any(e.reason is EntryReason.CONSUME for e in entries):
        # A capture that charged is a call like any other: one request on its endpoint and day,
        # so usage counts it as activity does (a free or zero capture is no call).
        key = (command.account_id, command.endpoint, command.occurred_at.astimezone(UTC).date())
        plan.traffic.setdefault(key, Traffic()).count_capture()
    if isinstance(command, CaptureHold) and rejection is None:
        # The capture's request id now names a consume: a usage event reusing it is refused.
        plan.processed.append(
            ProcessedId(
                IdKind.REQUEST,
                decoded.account_id,
                command.request_id,
                decoded.payload_sha256,
                first_seq,
                last_seq=last_seq,
            )
        )


def _add_credits(plan: BatchPlan, entry: LedgerEntry) -> None:
    counted = usage_credits(entry.reason, entry.delta, entry.metadata, entry.occurred_at)
    if counted is not None:
        endpoint, day, credits = counted
        plan.traffic.setdefault((entry.account_id, endpoint, day), Traffic()).credits += credits


def _reuse_code(decoded: Decoded) -> DeadLetterCode:
    if decoded.id_kind is IdKind.REQUEST:
        return DeadLetterCode.REQUEST_ID_REUSED
    return DeadLetterCode.COMMAND_ID_REUSED


def _reuse_text(decoded: Decoded) -> str:
    return f"{decoded.id_kind.value} id {decoded.idempotency_id!r} was used with another payload"
