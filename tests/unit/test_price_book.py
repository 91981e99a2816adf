"""The versioned price book: which version prices a call, decoding by occurred_at, the body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.price_book import PriceBookBody, book_json, version_json, versions_from_json
from schemas.usage import UsageEvent
from services.core.model import ConsumeUsage
from services.core.pricing import DEFAULT_PRICE_BOOK, PriceBook, PriceSchedule, PriceVersion
from services.demo import DEMO_ACCOUNTS, DEMO_PRICES, expected_outcome, usage_events
from services.history.reprice import load_price_book, price_under
from services.writer.decoding import Decoded, decode_usage

T = datetime(2027, 1, 1, tzinfo=UTC)
SCAN = "POST /v1/scanner/scan"
V1 = PriceVersion(1, T, default_credits=2, prices={SCAN: 3})
V2 = PriceVersion(2, T + timedelta(days=10), default_credits=4, prices={SCAN: 7})


def test_before_any_version_the_built_in_book_is_version_0() -> None:
    schedule = PriceSchedule((V1, V2))
    before = T - timedelta(microseconds=1)
    assert schedule.in_force(before) is None
    assert schedule.price(SCAN, before) == DEFAULT_PRICE_BOOK.price(SCAN) == 1
    assert schedule.book_at(before) is DEFAULT_PRICE_BOOK
    assert PriceSchedule().price("GET /v1/reports", T) == 0


def test_a_version_prices_from_its_effective_at_until_the_next_starts() -> None:
    schedule = PriceSchedule((V2, V1))  # any order
    assert schedule.in_force(T) == V1
    assert (schedule.price(SCAN, T), schedule.price("GET /other", T)) == (3, 2)
    last_of_v1 = V2.effective_at - timedelta(microseconds=1)
    assert schedule.price(SCAN, last_of_v1) == 3
    assert (
        schedule.price(SCAN, V2.effective_at),
        schedule.price("GET /other", V2.effective_at),
    ) == (
        7,
        4,
    )
    assert schedule.latest == 2


def test_a_version_set_later_for_an_earlier_instant_is_superseded_at_the_later_start() -> None:
    # v3 is set after v2 but starts before it: it prices until v2's start, then v2 does.
    v3 = PriceVersion(3, T + timedelta(days=5), default_credits=9, prices={})
    schedule = PriceSchedule((V1, V2, v3))
    assert schedule.in_force(T + timedelta(days=6)) == v3
    assert schedule.in_force(T + timedelta(days=10)) == V2


def test_at_the_same_instant_the_later_version_wins() -> None:
    correction = PriceVersion(3, V2.effective_at, default_credits=5, prices={SCAN: 6})
    schedule = PriceSchedule((V1, V2, correction))
    assert schedule.in_force(V2.effective_at) == correction


def test_version_numbers_are_unique_and_never_0() -> None:
    with pytest.raises(AssertionError):
        PriceSchedule((V1, PriceVersion(1, T + timedelta(days=1), 1, {})))
    with pytest.raises(AssertionError):
        PriceVersion(0, T, 1, {})


def _credits(decoded: Decoded) -> int:
    assert isinstance(decoded.command, ConsumeUsage)
    return decoded.command.credits


def _usage(occurred_at: datetime, **changes: object) -> bytes:
    event: dict[str, object] = {
        "request_id": "r1", "account_id": "a", "endpoint": SCAN, "status_code": 200,
        "occurred_at": occurred_at.isoformat(), **changes,
    }  # fmt: skip
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("occurred_at", "credits"),
    [(T - timedelta(seconds=1), 1), (T, 3), (T + timedelta(days=10), 7)],
)
def test_the_writer_prices_a_call_by_the_version_in_force_at_its_occurred_at(
    occurred_at: datetime, credits: int
) -> None:
    decoded = decode_usage(b"a", _usage(occurred_at), PriceSchedule((V1, V2)))
    assert isinstance(decoded, Decoded)
    assert _credits(decoded) == credits


def test_a_call_that_names_its_credits_keeps_them_under_any_version() -> None:
    decoded = decode_usage(b"a", _usage(T, credits=11), PriceSchedule((V1, V2)))
    assert isinstance(decoded, Decoded)
    assert _credits(decoded) == 11


def test_an_offset_in_occurred_at_is_the_same_instant() -> None:
    # 2027-01-01T00:30+01:00 is 23:30 UTC the day before: version 0 still.
    local = datetime.fromisoformat("2027-01-01T00:30:00+01:00")
    decoded = decode_usage(b"a", _usage(local), PriceSchedule((V1,)))
    assert isinstance(decoded, Decoded)
    assert _credits(decoded) == 1


def test_the_body_is_strict() -> None:
    good = {"effective_at": "2027-01-01T00:00:00Z", "default_credits": 1, "prices": {SCAN: 2}}
    assert PriceBookBody.model_validate(good).prices == {SCAN: 2}
    for bad in (
        {**good, "prices": {SCAN: -1}},
        {**good, "prices": {SCAN: 1.5}},
        {**good, "prices": {SCAN: "2"}},
        {**good, "prices": {"": 2}},
        {**good, "default_credits": -1},
        {**good, "effective_at": "2027-01-01T00:00:00"},  # no offset
        {**good, "extra": True},
        {k: v for k, v in good.items() if k != "prices"},
    ):
        with pytest.raises(ValidationError):
            PriceBookBody.model_validate(bad)


def test_versions_round_trip_through_json_and_version_0_is_shown_but_not_data() -> None:
    shown = book_json([V2, V1], T + timedelta(days=1))
    assert shown["current"]["version"] == 1
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert versions_from_json(shown["versions"]) == (V1, V2)
    builtin = book_json([], T)["current"]
    assert builtin == version_json(None)
    assert (builtin["version"], builtin["builtin"], builtin["prices"][SCAN]) == (0, True, 1)
    assert versions_from_json([builtin]) == ()


def test_reprice_reads_a_price_book_body_or_the_older_shape(tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_text(json.dumps({"effective_at": "2027-01-01T00:00:00Z", "default_credits": 2,
                                "prices": {SCAN: 4}}))  # fmt: skip
    older = tmp_path / "old.json"
    older.write_text(json.dumps({"version": "x", "credits_by_endpoint": {SCAN: 4},
                                 "default_credits": 2}))  # fmt: skip
    for path in (body, older):
        book = load_price_book(path)
        assert (book.price(SCAN), book.price("GET /x")) == (4, 2)
    negative = tmp_path / "neg.json"
    negative.write_text(json.dumps({"prices": {SCAN: -4}}))
    with pytest.raises(ValueError, match="credits"):
        load_price_book(negative)


def test_a_failed_call_costs_nothing_under_either_book_and_own_credits_stay() -> None:
    book = PriceBook("b", {SCAN: 9}, 9)
    at = T.isoformat()
    failed = UsageEvent.model_validate(
        {"request_id": "r", "account_id": "a", "endpoint": SCAN, "status_code": 503,
         "occurred_at": at}
    )  # fmt: skip
    own = failed.model_copy(update={"status_code": 200, "credits": 2})
    priced = failed.model_copy(update={"status_code": 200})
    schedule = PriceSchedule((V1,))
    assert [price_under(e, book) for e in (failed, own, priced)] == [0, 2, 9]
    assert [price_under(e, schedule) for e in (failed, own, priced)] == [0, 2, 3]


def test_the_demo_prices_its_calls_by_its_price_book() -> None:
    account = DEMO_ACCOUNTS[0]
    events = usage_events(account)
    seeded = PriceSchedule(
        (
            PriceVersion(
                1, DEMO_PRICES.effective_at, DEMO_PRICES.default_credits, DEMO_PRICES.prices
            ),
        )
    )
    doubled = PriceSchedule(
        (
            PriceVersion(
                1, DEMO_PRICES.effective_at, 2, {k: 2 * v for k, v in DEMO_PRICES.prices.items()}
            ),
        )
    )
    spent = account.grant_credits - expected_outcome(account, events, seeded).balance
    own = sum(e["credits"] for e in events if "credits" in e and e["status_code"] < 400)
    assert spent > own > 0
    doubled_spent = account.grant_credits - expected_outcome(account, events, doubled).balance
    assert doubled_spent - own == 2 * (spent - own)
    assert expected_outcome(account, events) == expected_outcome(account, events, seeded)
