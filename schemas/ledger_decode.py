"""A fast reader of `credits.ledger.v1` messages for the projector: the same model as
`LedgerEntryMessage.model_validate_json`, built without running pydantic's validators when the
bytes have exactly the shape the writer writes (services/writer/wire.py).

Anything else (another producer's field order, an integer past 64 bits, a time written with an
offset, a value of an unexpected type) takes pydantic's path, so the contract is still the
model: tests/unit/test_ledger_decode.py holds the two equal on the writer's messages and on
random mutations of them. One message is read per ledger entry, and validating it was the
projector's largest single cost.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar, get_args

import orjson
from pydantic import BaseModel

from schemas.common import EARLIEST_INSTANT, LATEST_INSTANT
from schemas.ledger import EntryBucket, EntryReasonName, LedgerEntryMessage

_REASONS = frozenset(get_args(EntryReasonName))
_KEYS = (
    "id", "account_id", "seq", "delta", "balance_after", "reason", "source", "bucket",
    "metadata", "reserved_delta", "occurred_at", "recorded_at",
)  # fmt: skip
_BUCKET_KEYS = ("grant_id", "kind", "expires_at", "effective_at", "priority", "applies_to")
_INT64 = 2**63
# Exactly what orjson's OPT_UTC_Z writes: YYYY-MM-DDTHH:MM:SS[.ffffff]Z, ASCII digits (one match,
# not a slice and a test per part: two per entry).
_UTC_Z_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z")
_BARE_BUCKETS: dict[tuple[str, str], EntryBucket] = {}
_BARE_BUCKETS_MAX = 16_384  # about 16 MB (1 kB each): the grants in use, not every one ever read
_Model = TypeVar("_Model", bound=BaseModel)
_set_attribute = object.__setattr__  # what pydantic itself sets a frozen model's slots with


class _Unusual(Exception):
    """The message is not in the writer's own shape: pydantic reads it."""


def decode_entry_message(value: bytes) -> LedgerEntryMessage:
    try:
        return _fast(value)
    except _Unusual:
        return LedgerEntryMessage.model_validate_json(value)


def _fast(value: bytes) -> LedgerEntryMessage:
    # The checks inline, not a helper call per field: this runs once per ledger entry.
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise _Unusual from None
    if type(body) is not dict or tuple(body) != _KEYS:
        raise _Unusual
    (
        entry_id, account_id, seq, delta, balance_after, reason, source, bucket, metadata,
        reserved_delta, occurred_at, recorded_at,
    ) = body.values()  # fmt: skip
    if (
        type(entry_id) is not str or type(account_id) is not str or type(source) is not str
        or type(reason) is not str or reason not in _REASONS
        or type(seq) is not int or not -_INT64 <= seq < _INT64
        or type(delta) is not int or not -_INT64 <= delta < _INT64
        or type(balance_after) is not int or not -_INT64 <= balance_after < _INT64
        or type(reserved_delta) is not int or not -_INT64 <= reserved_delta < _INT64
    ):  # fmt: skip
        raise _Unusual
    return _construct(LedgerEntryMessage, {
        "id": entry_id, "account_id": account_id, "seq": seq, "delta": delta,
        "balance_after": balance_after, "reason": reason, "source": source,
        "bucket": None if bucket is None else _bucket(bucket), "metadata": _metadata(metadata),
        "reserved_delta": reserved_delta, "occurred_at": _instant(occurred_at),
        "recorded_at": _instant(recorded_at),
    })  # fmt: skip


def _bucket(value: Any) -> EntryBucket:
    if type(value) is not dict or tuple(value) != _BUCKET_KEYS:
        raise _Unusual
    grant_id, kind, expires_at, effective_at, priority, applies_to = value.values()
    if type(grant_id) is not str or type(kind) is not str:
        raise _Unusual
    if expires_at is None and effective_at is None and priority is None and applies_to is None:
        return _bare_bucket(grant_id, kind)
    if applies_to is not None and (
        type(applies_to) is not list or any(type(e) is not str for e in applies_to)
    ):
        raise _Unusual
    return _construct(EntryBucket, {
        "grant_id": grant_id, "kind": kind,
        "expires_at": None if expires_at is None else _instant(expires_at),
        "effective_at": None if effective_at is None else _instant(effective_at),
        "priority": None if priority is None else _int(priority),
        "applies_to": applies_to,
    })  # fmt: skip


def _bare_bucket(grant_id: str, kind: str) -> EntryBucket:
    """The bucket a consume or refund names (no terms: those ride on the grant entry), one
    model per grant, shared: it is frozen and holds no list. Most entries name one."""
    key = (grant_id, kind)
    bucket = _BARE_BUCKETS.get(key)
    if bucket is None:
        if len(_BARE_BUCKETS) >= _BARE_BUCKETS_MAX:
            _BARE_BUCKETS.clear()
        bucket = _BARE_BUCKETS[key] = _construct(EntryBucket, {
            "grant_id": grant_id, "kind": kind, "expires_at": None, "effective_at": None,
            "priority": None, "applies_to": None,
        })  # fmt: skip
    return bucket


def _construct(model: type[_Model], values: dict[str, Any]) -> _Model:
    """What `model_construct(**values)` builds when `values` holds every field by its name (no
    alias, default or post-init left to apply), without its loop over the fields: it was a
    tenth of the projector's time, two models per entry."""
    built = model.__new__(model)
    _set_attribute(built, "__dict__", values)
    _set_attribute(built, "__pydantic_fields_set__", set(values))
    _set_attribute(built, "__pydantic_extra__", None)
    _set_attribute(built, "__pydantic_private__", None)
    return built


def _check_constructible(model: type[BaseModel], keys: tuple[str, ...]) -> None:
    # At import, not by `assert` (python -O drops those): a model changed so that the shortcut
    # no longer builds what model_construct would must fail loudly, not decode wrongly.
    fields = model.model_fields
    if (
        tuple(fields) != keys
        or any(f.alias is not None or f.validation_alias is not None for f in fields.values())
        or model.__pydantic_post_init__ is not None
        or model.model_config.get("extra") == "allow"
    ):
        raise RuntimeError(f"{model.__name__} changed: update schemas/ledger_decode.py")


_check_constructible(LedgerEntryMessage, _KEYS)
_check_constructible(EntryBucket, _BUCKET_KEYS)


def _metadata(value: Any) -> dict[str, str | int | None]:
    if type(value) is not dict:
        raise _Unusual
    for item in value.values():
        if item is None or type(item) is str:
            continue
        if type(item) is not int or not -_INT64 <= item < _INT64:
            raise _Unusual
    return value


def _is_int(value: Any) -> bool:
    # orjson reads an integer past 64 bits as a float, and `bool` is an int subclass.
    return type(value) is int and -_INT64 <= value < _INT64


def _int(value: Any) -> int:
    if not _is_int(value):
        raise _Unusual
    return int(value)


def _instant(value: Any) -> datetime:
    if type(value) is not str or _UTC_Z_INSTANT.fullmatch(value) is None:
        raise _Unusual
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise _Unusual from None
    if not EARLIEST_INSTANT <= instant <= LATEST_INSTANT:
        raise _Unusual
    return instant
