"""Plan one partition batch: decoded records + loaded state -> everything to write. No I/O.

The store loads `states` and `seen` for the batch in two queries, this module decides, and the
store writes the plan in one transaction with the batch's offset advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.core import AccountState, LedgerEntry, decide, evolve_all
from services.writer.decoding import DeadLetterCode, Decoded, IdKind, Rejected

SeenKey = tuple[IdKind, str, str]  # (kind, account_id, idempotency id)


@dataclass(frozen=True, slots=True)
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    decoded: Decoded | Rejected


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: InputRecord
    code: DeadLetterCode
    message: str

    @property
    def account_id(self) -> str:
        decoded = self.record.decoded
        if isinstance(decoded, Decoded):
            return decoded.account_id
        return (self.record.key or b"").decode("utf-8", errors="replace")[:128]


@dataclass(frozen=True, slots=True)
class ProcessedId:
    kind: IdKind
    account_id: str
    idempotency_id: str
    payload_sha256: bytes
    first_seq: int | None


@dataclass(slots=True)
class BatchPlan:
    entries: list[LedgerEntry] = field(default_factory=list)
    states: dict[str, AccountState] = field(default_factory=dict)
    processed: list[ProcessedId] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0


def plan_batch(
    records: Sequence[InputRecord],
    states: Mapping[str, AccountState],
    seen: Mapping[SeenKey, bytes],
    recorded_at: datetime,
) -> BatchPlan:
    """Records in offset order; `states` holds every account the batch names."""
    plan = BatchPlan(states=dict(states))
    seen_now: dict[SeenKey, bytes] = dict(seen)
    for record in records:
        decoded = record.decoded
        if isinstance(decoded, Rejected):
            plan.dead_letters.append(DeadLetter(record, decoded.code, decoded.message))
            continue
        key: SeenKey = (decoded.id_kind, decoded.account_id, decoded.idempotency_id)
        earlier = seen_now.get(key)
        if earlier == decoded.payload_sha256:
            plan.duplicates += 1
            continue
        if earlier is not None:
            plan.dead_letters.append(DeadLetter(record, _reuse_code(decoded), _reuse_text(decoded)))
            continue
        seen_now[key] = decoded.payload_sha256
        _apply(plan, decoded, recorded_at)
    return plan


def _apply(plan: BatchPlan, decoded: Decoded, recorded_at: datetime) -> None:
    state = plan.states[decoded.account_id]
    entries = decide(state, decoded.command, recorded_at)
    plan.states[decoded.account_id] = evolve_all(state, entries)
    plan.entries.extend(entries)
    plan.processed.append(
        ProcessedId(
            kind=decoded.id_kind,
            account_id=decoded.account_id,
            idempotency_id=decoded.idempotency_id,
            payload_sha256=decoded.payload_sha256,
            first_seq=entries[0].seq if entries else None,
        )
    )


def _reuse_code(decoded: Decoded) -> DeadLetterCode:
    if decoded.id_kind is IdKind.REQUEST:
        return DeadLetterCode.REQUEST_ID_REUSED
    return DeadLetterCode.COMMAND_ID_REUSED


def _reuse_text(decoded: Decoded) -> str:
    return f"{decoded.id_kind.value} id {decoded.idempotency_id!r} was used with another payload"
