"""The usage fast path (`fast_usage`) decides exactly as the contract model: every generated
record, valid or nearly so, decodes to the same command and digest, or the same rejection, with
the fast path and without it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.pricing import DEFAULT_PRICE_BOOK
from services.writer import decoding
from services.writer.decoding import decode_usage, fast_usage

ODD = st.none() | st.booleans() | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)
INTS = st.integers(-5, 700) | st.integers(-(2**70), 2**70) | st.sampled_from([0, 599, 600, 99])
TEXT = st.text(max_size=3) | st.text(min_size=120, max_size=260) | st.sampled_from(["", "a\n"])
ACCOUNTS = st.sampled_from(["acct_1", "a.b:c-d", "acct 1", "acct_1\n", "ä", "x" * 128, "x" * 129])
OFFSETS = st.sampled_from(
    ["Z", "+00:00", "-05:30", "+23:59", "+24:00", "z", "", "+0530", "+00:60", "+05:75", "+00:99",
     "-23:99"]
)  # fmt: skip
FRACTIONS = st.sampled_from(["", ".5", ".123456", ".1234567", ".", ",5"])
YEARS = st.sampled_from([1, 2, 2026, 9998, 9999]) | st.integers(1, 9999)
INSTANTS = st.builds(
    lambda y, mo, d, h, fraction, offset, sep: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:00:00{fraction}{offset}"
    ),
    YEARS, st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), FRACTIONS, OFFSETS,
    st.sampled_from(["T", "t", " "]),
) | st.sampled_from(["0", "2026-11-21", "2026-11-21T10:00Z", "٢٠٢٦-11-21T10:00:00Z"])  # fmt: skip

PLAIN_INSTANTS = st.builds(
    lambda at, fraction, offset: at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),  # noqa: DTZ001
    st.sampled_from(["", ".5", ".123456"]),
    st.sampled_from(["Z", "+00:00", "-05:30", "+23:59"]),
)
FIELDS = {
    "request_id": TEXT | ODD,
    "account_id": ACCOUNTS | ODD,
    "key_id": TEXT | ODD,
    "endpoint": TEXT | ODD,
    "status_code": INTS | ODD,
    "occurred_at": INSTANTS | ODD | PLAIN_INSTANTS,
    "credits": INTS | ODD | st.sampled_from([10**12, 10**12 + 1]),
    "latency_ms": INTS | ODD | st.sampled_from([86_400_000, 86_400_001]),
}
VALID = {
    "request_id": st.text(min_size=1, max_size=10),
    "account_id": st.just("acct_1"),
    "key_id": st.none() | st.text(max_size=5),
    "endpoint": st.text(min_size=1, max_size=10),
    "status_code": st.integers(100, 599),
    "occurred_at": PLAIN_INSTANTS,
    "credits": st.none() | st.integers(0, 10**12),
    "latency_ms": st.none() | st.integers(0, 86_400_000),
}


@st.composite
def records(draw: st.DrawFn) -> bytes:
    doc: dict[str, object] = {}
    changed = draw(st.sets(st.sampled_from(list(FIELDS)), max_size=2) | st.just(set()))
    for name in FIELDS:
        if name not in changed:
            doc[name] = draw(VALID[name])
        elif draw(st.booleans()):
            doc[name] = draw(FIELDS[name])  # else absent
    if draw(st.integers(0, 19)) == 0:
        doc[draw(st.text(max_size=4))] = 1  # a field the contract does not name
    shape = draw(st.integers(0, 39))
    if shape == 0:
        return draw(st.binary(max_size=20))
    if shape == 1:
        return json.dumps([doc]).encode()
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()


def _slow(value: bytes) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoding, "fast_usage", lambda _value: None)
        return decode_usage(b"acct_1", value, DEFAULT_PRICE_BOOK)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_the_fast_path_decodes_as_the_contract_model(value: bytes) -> None:
    assert decode_usage(b"acct_1", value, DEFAULT_PRICE_BOOK) == _slow(value)


def test_the_bench_shape_takes_the_fast_path() -> None:
    body = {
        "request_id": "r1", "account_id": "acct_1", "key_id": "key_1", "endpoint": "POST /x",
        "status_code": 200, "occurred_at": "2026-11-21T10:00:00+00:00", "credits": 1,
        "latency_ms": 10,
    }  # fmt: skip
    fast = fast_usage(json.dumps(body).encode())
    assert fast is not None and fast.occurred_at == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert decode_usage(b"acct_1", json.dumps(body).encode(), DEFAULT_PRICE_BOOK) == _slow(
        json.dumps(body).encode()
    )


BASE = {
    "request_id": "r1", "account_id": "acct_1", "key_id": "key_1", "endpoint": "POST /x",
    "status_code": 200, "occurred_at": "2026-11-21T10:00:00Z", "credits": 1, "latency_ms": 10,
}  # fmt: skip
BOUNDARIES: dict[str, list[object]] = {
    "request_id": ["", "x" * 128, "x" * 129, "é" * 128, 1],
    "account_id": ["", "a" * 128, "a" * 129, "acct_1\n", "acct 1", "ａ", "a.b:c-d_E9"],
    "key_id": [None, "", "x" * 128, "x" * 129, 5],
    "endpoint": ["", "x" * 256, "x" * 257, None],
    "status_code": [99, 100, 599, 600, True, 200.0, "200", 2**64],
    "credits": [-1, 0, 10**12, 10**12 + 1, None, False, 2**64, 2**70, 1.0],
    "latency_ms": [-1, 0, 86_400_000, 86_400_001, None, True, 2**70],
    "occurred_at": [
        "0001-01-01T00:00:00Z", "0001-01-01T23:00:00-01:00", "0001-01-02T00:00:00+00:00",
        "0001-12-31T23:00:00-23:00", "0002-01-01T00:00:00+23:59", "9998-12-31T23:59:59-23:59",
        "9999-12-30T23:59:59Z", "9999-12-31T00:00:00Z", "9999-01-01T00:00:00Z",
        "2026-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2026-11-21T10:00:00.1234567Z",
        "2026-11-21T10:00:00+24:00", "2026-11-21T24:00:00Z", "2026-11-21T10:00:60Z",
        "2026-11-21T10:00:00", "2026-11-21T10:00:00.Z", "1700000000", 1700000000,
        # offset minutes past 59: fromisoformat carries them into the hours, the model refuses
        "2026-11-21T10:00:00+00:60", "2026-11-21T10:00:00+05:75", "2026-11-21T10:00:00+00:99",
        "2026-11-21T10:00:00-23:99",
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, values in BOUNDARIES.items() for v in [*values, "<absent>"]],
)
def test_each_bound_decides_as_the_contract_model(field: str, value: object) -> None:
    body = dict(BASE)
    if value == "<absent>":
        del body[field]
    else:
        body[field] = value
    raw = json.dumps(body).encode()
    assert decode_usage(b"acct_1", raw, DEFAULT_PRICE_BOOK) == _slow(raw)
