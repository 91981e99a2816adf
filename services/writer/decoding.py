"""Kafka record bytes -> a domain command, or a rejection with a stable dead-letter code."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

import orjson
from pydantic import BaseModel, ValidationError

from schemas.commands import (
    COMMAND_ADAPTER,
    AccountSettingsCommand,
    AdjustmentCommand,
    AnyCommand,
    CaptureCommand,
    ExpireCommand,
    GrantCommand,
    HoldCommand,
    RefundCommand,
    ReleaseCommand,
    VoidGrantCommand,
)
from schemas.common import MAX_CREDITS
from schemas.usage import UsageEvent
from services.core.model import (
    DEFAULT_PRIORITY,
    AdjustBalance,
    AutoReload,
    BucketKind,
    CaptureHold,
    ChangeSettings,
    Command,
    ConsumeUsage,
    ExpireDue,
    GrantCredits,
    PlaceHold,
    RefundRequest,
    ReleaseHold,
    VoidGrant,
)
from services.core.pricing import PriceBook, PriceSchedule
from services.core.value import value_type


class DeadLetterCode(StrEnum):
    MALFORMED_JSON = "malformed-json"
    SCHEMA_INVALID = "schema-invalid"
    KEY_MISMATCH = "key-mismatch"
    REQUEST_ID_REUSED = "request-id-reused"
    COMMAND_ID_REUSED = "command-id-reused"
    OCCURRED_IN_FUTURE = "occurred-in-future"
    UNPROCESSABLE = "unprocessable"  # deciding the record raised (services/writer/plan.py)


class IdKind(StrEnum):
    REQUEST = "request"
    COMMAND = "command"


@value_type
class Decoded:
    account_id: str
    id_kind: IdKind
    idempotency_id: str
    payload_sha256: bytes  # of the canonical JSON, so formatting differences are no "reuse"
    command: Command


@value_type
class Rejected:
    code: DeadLetterCode
    message: str


def decode_usage(
    key: bytes | None, value: bytes | None, prices: PriceBook | PriceSchedule
) -> Decoded | Rejected:
    """A usage event without `credits` is priced by the price book in force at its occurred_at
    (`prices`: the schedule the writer loaded for this batch, or one fixed book)."""
    event: UsageEvent | FastUsage | None = fast_usage(value)
    if event is None:  # not plainly valid: the contract model decides, and names the error
        try:
            event = UsageEvent.model_validate_json(value or b"")
        except ValidationError as error:
            return _rejection(error)
    if (nul := _nul_in_text(value)) is not None:
        return nul
    if (mismatch := _key_mismatch(key, event.account_id)) is not None:
        return mismatch
    occurred_at = event.occurred_at.astimezone(UTC)
    credits = event.credits
    if credits is None:
        credits = prices.price(event.endpoint, occurred_at)
    command = ConsumeUsage(
        account_id=event.account_id,
        request_id=event.request_id,
        endpoint=event.endpoint,
        status_code=event.status_code,
        credits=credits,
        occurred_at=occurred_at,
        key_id=event.key_id,
        latency_ms=event.latency_ms,
    )
    return Decoded(
        event.account_id,
        IdKind.REQUEST,
        event.request_id,
        _usage_digest(event, occurred_at),
        command,
    )


class FastUsage(NamedTuple):
    """A usage event's contract fields, as `UsageEvent` reads them from plainly valid JSON."""

    request_id: str
    account_id: str
    key_id: str | None
    endpoint: str
    status_code: int
    occurred_at: datetime
    credits: int | None
    latency_ms: int | None


_USAGE_FIELDS = frozenset(FastUsage._fields)
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.:\-]+")  # AccountId's pattern, matched in full
# The instants the fast path reads: what producers write (ISO-8601, `T`, seconds, up to six
# fractional digits, `Z` or an hh:mm offset). Any other form goes to the contract model.
_D2 = "[0-9]{2}"  # ASCII digits only: `\d` would take other scripts' digits too
_PLAIN_INSTANT = re.compile(
    # The offset's minutes below 60: fromisoformat would carry 60-99 into the hours, which
    # the contract's model refuses (a dead letter, not a charge at a shifted instant).
    f"[0-9]{{4}}-{_D2}-{_D2}T{_D2}:{_D2}:{_D2}(?:\\.[0-9]{{1,6}})?"
    "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_SAFE_YEARS = range(2, 9999)  # schemas/common.py: an instant of these years is in UTC's range


def fast_usage(value: bytes | None) -> FastUsage | None:
    """The event when `value` is a JSON object holding only contract fields, each plainly
    within its bounds: exactly what `UsageEvent.model_validate_json` gives for it (property-
    tested in tests/unit/test_writer_fast_usage.py). None when in any doubt: the model decides.
    Pydantic validating each event was the largest single share of the writer's decoding."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or not _USAGE_FIELDS.issuperset(doc):
        return None  # extra fields are ignored by the model, but it decides those
    get = doc.get
    request_id, account_id, key_id = get("request_id"), get("account_id"), get("key_id")
    endpoint, status_code, occurred_at = get("endpoint"), get("status_code"), get("occurred_at")
    credits, latency_ms = get("credits"), get("latency_ms")
    if not (
        type(request_id) is str and 1 <= len(request_id) <= 128
        and type(account_id) is str and len(account_id) <= 128
        and _ACCOUNT_ID.fullmatch(account_id)
        and (key_id is None or (type(key_id) is str and len(key_id) <= 128))
        and type(endpoint) is str and 1 <= len(endpoint) <= 256
        and type(status_code) is int and 100 <= status_code <= 599
        and (credits is None or (type(credits) is int and 0 <= credits <= MAX_CREDITS))
        and (latency_ms is None or (type(latency_ms) is int and 0 <= latency_ms <= 86_400_000))
        and type(occurred_at) is str and _PLAIN_INSTANT.fullmatch(occurred_at)
    ):  # fmt: skip
        return None
    try:
        at = datetime.fromisoformat(occurred_at)
    except ValueError:
        return None
    if at.year not in _SAFE_YEARS:
        return None
    return FastUsage(request_id, account_id, key_id, endpoint, status_code, at, credits, latency_ms)


def decode_command(key: bytes | None, value: bytes | None) -> Decoded | Rejected:
    try:
        parsed = COMMAND_ADAPTER.validate_json(value or b"")
    except ValidationError as error:
        return _rejection(error)
    if (nul := _nul_in_text(value)) is not None:
        return nul
    if (mismatch := _key_mismatch(key, parsed.account_id)) is not None:
        return mismatch
    if isinstance(parsed, AdjustmentCommand) and parsed.amount == 0:
        return Rejected(DeadLetterCode.SCHEMA_INVALID, "amount: an adjustment must not be 0")
    command = to_domain(parsed)
    return Decoded(
        parsed.account_id,
        IdKind.COMMAND,
        parsed.command_id,
        _digest(parsed),
        command,
    )


def to_domain(parsed: AnyCommand) -> Command:
    """The wire command as the domain's command; all times in UTC."""
    account_id, command_id = parsed.account_id, parsed.command_id
    at = parsed.occurred_at.astimezone(UTC)
    match parsed:
        case GrantCommand():
            return _grant(parsed)
        case AdjustmentCommand():
            return AdjustBalance(
                account_id, command_id, parsed.amount, parsed.reason, at, parsed.allow_negative
            )
        case RefundCommand():
            return RefundRequest(
                account_id, command_id, parsed.request_id, parsed.amount, parsed.reason, at
            )
        case VoidGrantCommand():
            return VoidGrant(account_id, command_id, parsed.grant_id, at)
        case HoldCommand():
            expires_at = parsed.expires_at.astimezone(UTC)
            return PlaceHold(account_id, command_id, parsed.hold_id, parsed.amount, expires_at, at)
        case CaptureCommand():
            return CaptureHold(
                account_id, command_id, parsed.hold_id, parsed.amount, parsed.request_id,
                parsed.endpoint, at,
            )  # fmt: skip
        case ReleaseCommand():
            return ReleaseHold(account_id, command_id, parsed.hold_id, at)
        case AccountSettingsCommand():
            return _settings(parsed, at)
        case ExpireCommand():
            return ExpireDue(account_id, command_id, at)


def _settings(parsed: AccountSettingsCommand, at: datetime) -> ChangeSettings:
    given = parsed.model_fields_set
    reload = parsed.auto_reload
    return ChangeSettings(
        account_id=parsed.account_id,
        command_id=parsed.command_id,
        occurred_at=at,
        low_balance_threshold=parsed.low_balance_threshold,
        auto_reload=AutoReload(reload.threshold, reload.amount, reload.max_per_day)
        if reload
        else None,
        credit_limit=parsed.credit_limit,
        grant_expiring_notice_s=parsed.grant_expiring_notice_s,
        clear_low_balance_threshold="low_balance_threshold" in given
        and parsed.low_balance_threshold is None,
        clear_auto_reload="auto_reload" in given and reload is None,
    )


def _grant(grant: GrantCommand) -> GrantCredits:
    kind = BucketKind(grant.bucket)
    occurred_at = grant.occurred_at.astimezone(UTC)
    return GrantCredits(
        account_id=grant.account_id,
        command_id=grant.command_id,
        amount=grant.amount,
        kind=kind,
        priority=grant.priority if grant.priority is not None else DEFAULT_PRIORITY[kind],
        source=grant.source,
        effective_at=grant.effective_at.astimezone(UTC) if grant.effective_at else occurred_at,
        expires_at=grant.expires_at.astimezone(UTC) if grant.expires_at else None,
        occurred_at=occurred_at,
        applies_to=tuple(grant.applies_to) if grant.applies_to is not None else None,
        name=grant.name,
        metadata=dict(grant.metadata),
    )


def beyond_future_skew(
    decoded: Decoded | Rejected, log_time: datetime, max_future_skew_s: float
) -> Decoded | Rejected:
    """An event stamped later than its arrival in the log plus the skew bound is rejected.

    Event time decides expiry and drawdown eligibility, so a clock far ahead could draw on
    grants that are not effective yet or outlive their expiry. The bound is checked against the
    record's log append time, not the writer's clock, so a replay rejects exactly the same
    records. Late events (days old) are accepted: they are ordinary history.
    """
    if not isinstance(decoded, Decoded):
        return decoded
    ahead_s = (decoded.command.occurred_at - log_time).total_seconds()
    if ahead_s <= max_future_skew_s:
        return decoded
    return Rejected(
        DeadLetterCode.OCCURRED_IN_FUTURE,
        f"occurred_at is {ahead_s:.0f} s after the record reached the log"
        f" (bound {max_future_skew_s:.0f} s)",
    )


# A JSON \u0000 escape not itself escaped (an even run of backslashes before it).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _nul_in_text(value: bytes | None) -> Rejected | None:
    # Valid JSON, but Postgres text and jsonb cannot hold U+0000: stored, it would fail the
    # batch's transaction on every retry and stall every account of the partition.
    # The substring test first: it is a memchr-speed scan, the regex a backtracking one, and
    # almost no record holds the escape at all.
    if value is not None and b"\\u0000" in value and _NUL_ESCAPE.search(value):
        return Rejected(DeadLetterCode.SCHEMA_INVALID, "text must not contain U+0000")
    return None


def _key_mismatch(key: bytes | None, account_id: str) -> Rejected | None:
    # The key picks the partition, and the partition is what orders an account's events: a
    # record keyed otherwise could overtake its account's earlier events.
    if key is not None and key != account_id.encode():
        return Rejected(DeadLetterCode.KEY_MISMATCH, "record key differs from account_id")
    return None


def _rejection(error: ValidationError) -> Rejected:
    first = error.errors()[0]
    if first["type"] in ("json_invalid", "json_type"):
        return Rejected(
            DeadLetterCode.MALFORMED_JSON, printable_text(f"not valid JSON: {first['msg']}")
        )
    location = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = f"{location}: {first['msg']}"[:500]
    return Rejected(DeadLetterCode.SCHEMA_INVALID, printable_text(message))


def printable_text(text: str) -> str:
    """Text from a record (a field name in an error, a key) made storable: Postgres text cannot
    hold U+0000, and a dead letter that cannot be written would stall its partition."""
    return text.replace("\x00", "\\u0000")


def _usage_digest(event: UsageEvent | FastUsage, occurred_at_utc: datetime) -> bytes:
    """`_digest(event)`, the same bytes (tests/unit/test_writer_decoding.py holds them equal) at a
    fifth of the cost: one is taken per usage event. The canonical dict is written out rather than
    dumped, and orjson writes it when its output is what `json.dumps` would write: ASCII with
    nothing escaped (ensure_ascii and the escapes are where the two differ)."""
    canonical = {
        "account_id": event.account_id, "credits": event.credits, "endpoint": event.endpoint,
        "key_id": event.key_id, "latency_ms": event.latency_ms,
        "occurred_at": occurred_at_utc.isoformat(), "request_id": event.request_id,
        "status_code": event.status_code,
    }  # fmt: skip
    text = orjson.dumps(canonical)
    if not text.isascii() or b"\\" in text:
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).digest()


def _digest(model: BaseModel) -> bytes:
    """Hash of the canonical payload: the same instant written with another offset, other key
    order or other whitespace is the same payload (a harmless retry, not a reuse)."""
    canonical = json.dumps(_utc(model.model_dump()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


def _utc(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _utc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utc(v) for v in value]
    return value
