"""services/client against a scripted transport: auth, retries, idempotency, errors, paging.

The live API is tests/integration/test_clients.py; here each answer is chosen to reach a rule
of the core (what is retried, how long it waits, what `credits_remaining` says)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.client import (
    AsyncCreditLedgerClient,
    CreditLedgerClient,
    Endpoints,
    ProblemError,
    RetryPolicy,
)
from services.client.core import Call, Send, Session, Sleep

URL = "http://ledger.test"
Handler = Callable[[httpx.Request], httpx.Response]
NO_WAIT = RetryPolicy(max_attempts=4, base_delay_s=0.0, jitter=lambda top: top)


def problem(status: int, slug: str, **extra: object) -> httpx.Response:
    body = {"type": f"/problems/{slug}", "title": slug,
            "status": status, "detail": f"{slug} here", **extra}  # fmt: skip
    headers = {"content-type": "application/problem+json"}
    if status == 429:
        headers["retry-after"] = "1"
    return httpx.Response(status, content=json.dumps(body), headers=headers)


class Script:
    """Answers in order (the last one repeats) and records every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers, self.requests = list(answers), []  # type: ignore[var-annotated]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, **kwargs: object) -> CreditLedgerClient:
    http = httpx.Client(base_url=URL, transport=httpx.MockTransport(script))
    options: dict[str, object] = {"retry": NO_WAIT, **kwargs}
    return CreditLedgerClient(URL, http=http, **options)  # type: ignore[arg-type]


def ok(body: object, status: int = 200, remaining: int | None = None) -> httpx.Response:
    headers = {} if remaining is None else {"X-Credits-Remaining": str(remaining)}
    return httpx.Response(status, json=body, headers=headers)


def test_a_customer_read_sends_the_key_and_tracks_credits_remaining() -> None:
    script = Script(ok({"accountId": "a", "available": 7}, remaining=7))
    with client(script, api_key="cl_live_x") as api:
        assert api.credits_remaining is None
        assert api.balance()["available"] == 7
        assert api.credits_remaining == 7
    sent = script.requests[0]
    assert sent.url.path == "/v1/credits/balance" and not sent.url.query
    assert sent.headers["authorization"] == "Bearer cl_live_x"
    assert "creditledger-account" not in sent.headers


def test_a_402_check_is_an_answer_and_still_updates_credits_remaining() -> None:
    script = Script(
        ok({"allowed": True, "available": 3}, remaining=3),
        httpx.Response(
            402,
            json={**json.loads(problem(402, "insufficient-credits").content), "available": 3},
            headers={"X-Credits-Remaining": "3", "content-type": "application/problem+json"},
        ),
    )
    with client(script, api_key="k") as api:
        assert api.check(2, "POST /scan") == {"allowed": True, "available": 3}
        refused = api.check(5)
        assert (refused["allowed"], refused["available"]) == (False, 3)
        assert api.credits_remaining == 3
    assert dict(script.requests[0].url.params) == {"cost": "2", "endpoint": "POST /scan"}
    assert dict(script.requests[1].url.params) == {"cost": "5"}


def test_a_refused_check_keeps_the_problems_members_but_its_type() -> None:
    body = {**json.loads(problem(402, "insufficient-credits").content),
            "allowed": False, "available": 2, "cost": 5, "owed": 0, "ledgerSeq": 9}  # fmt: skip
    headers = {"content-type": "application/problem+json"}
    script = Script(httpx.Response(402, json=body, headers=headers))
    with client(script, admin_token="svc", account="a") as api:
        refused = api.check(5, min_seq=9, account="b")
    assert refused == {"allowed": False, "available": 2, "cost": 5, "owed": 0, "ledgerSeq": 9,
                       "detail": "insufficient-credits here"}  # fmt: skip
    sent = script.requests[0]
    assert sent.headers["creditledger-account"] == "b"
    assert dict(sent.url.params) == {"cost": "5", "min_seq": "9"}


def test_the_dashboard_exchange_sends_no_credential_and_is_not_retried() -> None:
    script = Script(problem(503, "unavailable"), ok({"keyId": "dsn_1"}, 201))
    with client(script, admin_token="adm") as api, pytest.raises(ProblemError):
        api.exchange_dashboard_session("cl_dsl_t")
    (sent,) = script.requests
    assert "authorization" not in sent.headers
    assert json.loads(sent.content) == {"token": "cl_dsl_t"}


def test_a_service_token_names_the_account_it_reads() -> None:
    script = Script(ok({"balance": 1}))
    with client(script, admin_token="cl_adm_t", account="acct_9") as api:
        api.balance(as_of=datetime(2026, 1, 2, tzinfo=UTC), by="occurred")
    sent = script.requests[0]
    assert sent.headers["authorization"] == "Bearer cl_adm_t"
    assert sent.headers["creditledger-account"] == "acct_9"
    assert dict(sent.url.params) == {"as_of": "2026-01-02T00:00:00+00:00", "by": "occurred"}


def test_errors_are_problem_errors_with_every_field() -> None:
    script = Script(problem(422, "invalid-request", errors=[{"field": "q", "message": "no"}]))
    with client(script, api_key="k") as api, pytest.raises(ProblemError) as raised:
        api.usage(group_by="day")
    error = raised.value
    assert (error.status, error.slug, error.title) == (422, "invalid-request", "invalid-request")
    assert error.type == "/problems/invalid-request"
    assert error.detail == "invalid-request here"
    assert error.extra == {"errors": [{"field": "q", "message": "no"}]}


def test_an_answer_that_is_not_a_problem_is_still_a_problem_error() -> None:
    script = Script(httpx.Response(404, text="<html>nope</html>"))
    with client(script, api_key="k") as api, pytest.raises(ProblemError) as raised:
        api.ledger_entry("e1")
    assert (raised.value.status, raised.value.type) == (404, "about:blank")
    assert "nope" in raised.value.detail


def drive(session: Session, call: Call[Any], answers: Iterator[httpx.Response]) -> list[object]:
    """Run the core's exchange by hand: what it asks for, in order."""
    steps: list[object] = []
    exchange = session.exchange(call)
    step = next(exchange)
    try:
        while True:
            steps.append(step)
            step = exchange.send(next(answers) if isinstance(step, Send) else None)
    except StopIteration as done:
        steps.append(done.value)
    except ProblemError as error:
        steps.append(error.status)
    return steps


def session(policy: RetryPolicy) -> Session:
    return Session(api_key="k", account="a", admin_token="t", ingest_token=None, retry=policy)


def test_429_waits_what_retry_after_says_then_retries() -> None:
    core = session(NO_WAIT)
    answers = iter([problem(429, "rate-limited"), ok({"balance": 1})])
    steps = drive(core, Endpoints(core).balance(), answers)
    assert [type(s).__name__ for s in steps] == ["Send", "Sleep", "Send", "dict"]
    assert steps[1] == Sleep(1.0)


def test_a_retry_after_beyond_the_cap_is_raised_not_waited() -> None:
    core = session(RetryPolicy(max_retry_after_s=0.5))
    steps = drive(core, Endpoints(core).balance(), iter([problem(429, "rate-limited")]))
    assert steps[-1] == 429 and not any(isinstance(s, Sleep) for s in steps)


def test_5xx_backs_off_exponentially_with_bounded_attempts() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.2, max_delay_s=0.5, jitter=lambda t: t)
    core = session(policy)
    steps = drive(core, Endpoints(core).balance(), iter([problem(503, "unavailable")] * 9))
    sleeps = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert sleeps == [0.2, 0.4, 0.5]  # doubled, capped; then the fourth failure is raised
    assert steps[-1] == 503


def test_jitter_stays_within_the_backoff() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    for attempt in (1, 2, 3, 4, 5):
        assert 0 <= policy.backoff_s(attempt) <= min(8.0, 2 ** (attempt - 1))


def test_admin_writes_carry_one_idempotency_key_across_retries() -> None:
    script = Script(
        problem(503, "unavailable"), httpx.ConnectError("down"), ok({"commandId": "c1"}, 202)
    )
    with client(script, admin_token="adm", account="acct_1") as api:
        accepted = api.grant(100, name="pack", expires_at=datetime(2027, 1, 1, tzinfo=UTC))
        own = api.adjust(-5, reason="typo", idempotency_key="mine-1", account_id="acct_2")
    assert accepted == {"commandId": "c1"} and own == {"commandId": "c1"}
    grants = script.requests[:3]
    keys = {r.headers["idempotency-key"] for r in grants}
    assert len(keys) == 1 and len(keys.pop()) == 36
    assert all(r.url.path == "/v1/admin/accounts/acct_1/grants" for r in grants)
    assert json.loads(grants[0].content) == {
        "amount": 100, "name": "pack", "expires_at": "2027-01-01T00:00:00+00:00",
    }  # fmt: skip
    adjust = script.requests[3]
    assert adjust.url.path == "/v1/admin/accounts/acct_2/adjustments"
    assert adjust.headers["idempotency-key"] == "mine-1"
    assert adjust.headers["authorization"] == "Bearer adm"


def test_a_write_the_api_does_not_dedupe_is_retried_only_when_surely_not_sent() -> None:
    script = Script(httpx.ConnectError("refused"), ok({"keyId": "k1", "secret": "s"}, 201))
    with client(script, admin_token="adm") as api:
        assert api.create_key("acct_1")["keyId"] == "k1"
    assert len(script.requests) == 2
    script = Script(problem(500, "internal-error"), ok({"keyId": "k2"}, 201))
    with client(script, admin_token="adm") as api, pytest.raises(ProblemError):
        api.create_key("acct_1")
    assert len(script.requests) == 1
    script = Script(httpx.ReadTimeout("lost"), ok({"keyId": "k3"}, 201))
    with client(script, admin_token="adm") as api, pytest.raises(httpx.ReadTimeout):
        api.create_key("acct_1")


def test_settings_send_only_the_fields_given_and_none_clears() -> None:
    script = Script(ok({"commandId": "c"}, 202))
    with client(script, admin_token="adm", account="a") as api:
        api.settings(credit_limit=None, low_balance_threshold=10)
    assert json.loads(script.requests[0].content) == {
        "low_balance_threshold": 10, "credit_limit": None,
    }  # fmt: skip


def test_the_ledger_iterator_follows_the_cursor() -> None:
    pages = Script(
        ok({"data": [{"seq": 3}, {"seq": 2}], "hasMore": True, "nextCursor": "cur1"}),
        ok({"data": [{"seq": 1}], "hasMore": False, "nextCursor": None}),
    )
    with client(pages, api_key="k") as api:
        entries = api.iter_ledger(limit=2, reason=["grant", "consume"])
        assert [e["seq"] for e in entries] == [3, 2, 1]
    first, second = (dict(r.url.params) for r in pages.requests)
    assert first == {"limit": "2", "reason": "grant,consume"}
    assert second == {"limit": "2", "reason": "grant,consume", "cursor": "cur1"}


def test_wait_for_command_treats_404_as_not_yet() -> None:
    script = Script(
        problem(404, "not-found"),
        ok({"commandId": "c", "status": "pending"}),
        ok({"commandId": "c", "status": "applied", "reason": None}),
    )
    with client(script, admin_token="adm") as api:
        assert api.wait_for_command("c", poll_s=0.001)["status"] == "applied"
    assert len(script.requests) == 3


def test_wait_for_command_has_a_deadline() -> None:
    script = Script(ok({"commandId": "c", "status": "pending"}))
    with client(script, admin_token="adm") as api, pytest.raises(TimeoutError):
        api.wait_for_command("c", timeout_s=0.05, poll_s=0.01)


def test_missing_credentials_and_naive_times_are_refused_before_sending() -> None:
    script = Script(ok({}))
    with client(script) as api:
        with pytest.raises(ValueError, match="api_key"):
            api.balance()
        with pytest.raises(ValueError, match="admin token"):
            api.create_account("a", "A")
    with client(script, api_key="k") as api, pytest.raises(ValueError, match="timezone"):
        api.activity(from_=datetime(2026, 1, 1))  # noqa: DTZ001
    assert script.requests == []


async def test_the_async_client_shares_the_rules() -> None:
    script = Script(
        problem(502, "bad-gateway"),
        ok({"data": [{"seq": 2}], "nextCursor": "c2"}, remaining=40),
        ok({"data": [{"seq": 1}], "nextCursor": None}, remaining=39),
    )
    http = httpx.AsyncClient(base_url=URL, transport=httpx.MockTransport(script))
    async with AsyncCreditLedgerClient(URL, api_key="k", retry=NO_WAIT, http=http) as api:
        seqs = [entry["seq"] async for entry in api.iter_ledger(limit=1)]
        assert seqs == [2, 1] and api.credits_remaining == 39
    assert [r.url.params.get("cursor") for r in script.requests] == [None, None, "c2"]
    await http.aclose()


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


def test_sync_and_async_clients_offer_the_same_methods_and_parameters() -> None:
    sync, aio = public_methods(CreditLedgerClient), public_methods(AsyncCreditLedgerClient)
    assert set(sync) - {"close"} == set(aio) - {"aclose"}
    for name, signature in sync.items():
        if name != "close":
            assert list(signature.parameters) == list(aio[name].parameters), name
    # every endpoint description has a method of the same name and parameters
    for name, signature in public_methods(Endpoints).items():
        if name in ("next_page", "command_poll"):
            continue
        assert list(signature.parameters) == list(sync[name].parameters), name
