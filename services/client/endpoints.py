"""Every endpoint as a `Call`: path, parameters, body, auth, retry safety and how to read the
answer. Both clients send these; nothing here does I/O.

Admin writes carry an `Idempotency-Key` (the caller's, else generated once per call), so the
clients may retry them after a 5xx or a lost answer: the API applies a key once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar, cast
from urllib.parse import quote

from services.client import models
from services.client.core import (
    Answer,
    Call,
    Instant,
    Session,
    body,
    idempotency,
    instant,
    query,
)

T = TypeVar("T")
By = Literal["occurred", "recorded"]
GroupBy = Literal["endpoint", "day", "month"]
Period = Literal["daily", "monthly", "yearly"]
BucketKind = Literal["subscription", "purchased", "gift", "promotional"]


class Unset:
    """A settings field left out (kept as it is), unlike None (cleared)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def _json(answer: Answer) -> Any:
    return answer.json()


def _as(_: type[T]) -> Any:
    """A parser returning the JSON body as the TypedDict `T` (the wire's shape)."""
    return _json


def _nothing(_: Answer) -> None:
    return None


def _check(answer: Answer) -> models.Check:
    """200 and 402 both answer the question; 402's problem body still says `available` (and
    `cost`, `owed`, …): its members are kept, its problem fields but `detail` dropped."""
    parsed = answer.json() or {}
    result = {k: v for k, v in parsed.items() if k not in ("type", "title", "status", "instance")}
    result["allowed"] = answer.status == 200
    return cast(models.Check, result)


def _status_or_none(answer: Answer) -> models.CommandStatus | None:
    return None if answer.status == 404 else cast(models.CommandStatus, answer.json())


def _segment(value: str) -> str:
    return quote(value, safe="")


def _read(path: str, parse: Any, params: dict[str, Any], account: str | None) -> Call[Any]:
    return Call("GET", path, "customer", parse, params, account=account)


class Endpoints:
    """The calls, with the session's default account and credentials in mind."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # --- customer reads (an API key, or a service token naming the account) -----------------
    # `account`: the account a service token reads (`Creditledger-Account`), else the client's.

    def balance(
        self,
        *,
        as_of: Instant | None = None,
        by: By | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Balance]:
        params = query(as_of=as_of, by=by, min_seq=min_seq)
        return _read("/v1/credits/balance", _as(models.Balance), params, account)

    def balance_explain(
        self,
        *,
        as_of: Instant | None = None,
        by: By | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.BalanceExplained]:
        params = query(as_of=as_of, by=by, min_seq=min_seq)
        return _read("/v1/credits/balance/explain", _as(models.BalanceExplained), params, account)

    def daily_balance(
        self, *, days: int | None = None, account: str | None = None
    ) -> Call[models.BalanceHistory]:
        params = query(days=days)
        return _read("/v1/credits/balance/daily", _as(models.BalanceHistory), params, account)

    def check(
        self,
        cost: int,
        endpoint: str | None = None,
        *,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Check]:
        params = query(cost=cost, endpoint=endpoint, min_seq=min_seq)
        return Call(
            "GET", "/v1/credits/check", "customer", _check, params, ok_statuses=frozenset({402}),
            account=account,
        )  # fmt: skip

    def activity(
        self,
        *,
        from_: Instant | None = None,
        to: Instant | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Json]:
        params = query(from_=from_, to=to, min_seq=min_seq)
        return _read("/v1/credits/activity", _json, params, account)

    def ledger(
        self,
        *,
        from_: Instant | None = None,
        to: Instant | None = None,
        reason: str | Sequence[str] | None = None,
        limit: int | None = None,
        page: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
        expand: str | Sequence[str] | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.LedgerPage]:
        params = query(
            from_=from_, to=to, reason=reason, limit=limit, page=page, offset=offset,
            cursor=cursor, expand=expand, min_seq=min_seq,
        )  # fmt: skip
        return _read("/v1/credits/ledger", _as(models.LedgerPage), params, account)

    def ledger_entry(
        self, entry_id: str, *, account: str | None = None
    ) -> Call[models.LedgerEntry]:
        path = f"/v1/credits/ledger/{_segment(entry_id)}"
        return _read(path, _as(models.LedgerEntry), {}, account)

    def grants(
        self,
        *,
        covering_date: Instant | None = None,
        starting_at: Instant | None = None,
        effective_before: Instant | None = None,
        include_ledgers: bool | None = None,
        include_balance: bool | None = None,
        include_archived: bool | None = None,
        limit: int | None = None,
        next_page: str | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.GrantsPage]:
        params = query(
            covering_date=covering_date, starting_at=starting_at,
            effective_before=effective_before, include_ledgers=include_ledgers,
            include_balance=include_balance, include_archived=include_archived, limit=limit,
            next_page=next_page, min_seq=min_seq,
        )  # fmt: skip
        return _read("/v1/credits/grants", _as(models.GrantsPage), params, account)

    def get_grant(
        self,
        grant_id: str,
        *,
        include_ledgers: bool | None = None,
        include_balance: bool | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Json]:
        params = query(
            include_ledgers=include_ledgers, include_balance=include_balance, min_seq=min_seq
        )
        return _read(f"/v1/credits/grants/{_segment(grant_id)}", _json, params, account)

    def usage(
        self,
        *,
        group_by: GroupBy | None = None,
        from_: Instant | None = None,
        to: Instant | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Json]:
        params = query(group_by=group_by, from_=from_, to=to, min_seq=min_seq)
        return _read("/v1/usage", _json, params, account)

    def summary(
        self,
        *,
        period: Period | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> Call[models.Json]:
        params = query(period=period, min_seq=min_seq)
        return _read("/v1/account/summary", _json, params, account)

    def account_settings(self, *, account: str | None = None) -> Call[models.AccountSettings]:
        return _read("/v1/account/settings", _as(models.AccountSettings), {}, account)

    def alerts(
        self, *, days: int | None = None, limit: int | None = None, account: str | None = None
    ) -> Call[models.RecentAlerts]:
        params = query(days=days, limit=limit)
        return _read("/v1/account/alerts", _as(models.RecentAlerts), params, account)

    # --- paging ------------------------------------------------------------------------------

    @staticmethod
    def next_page(call: Call[Any], answer: Mapping[str, Any]) -> Call[Any] | None:
        """The call for the page after `answer`, by its cursor (None: that was the last).
        Ledger and admin lists answer `nextCursor`, grants `nextPage`."""
        if answer.get("nextCursor"):
            cursor_param, token = "cursor", answer["nextCursor"]
        elif answer.get("nextPage"):
            cursor_param, token = "next_page", answer["nextPage"]
        else:
            return None
        params = {k: v for k, v in call.params.items() if k not in ("page", "offset")}
        params[cursor_param] = str(token)
        return replace(call, params=params)

    # --- admin: accounts and keys ------------------------------------------------------------

    def create_account(self, account_id: str, name: str) -> Call[models.Json]:
        # Creating an existing account with the same name answers 200: safe to retry.
        payload = body(account_id=account_id, name=name)
        return Call("POST", "/v1/admin/accounts", "admin", _json, body=payload)

    def accounts(
        self, *, limit: int | None = None, next_page: str | None = None
    ) -> Call[models.AccountsPage]:
        params = query(limit=limit, next_page=next_page)
        return Call("GET", "/v1/admin/accounts", "admin", _as(models.AccountsPage), params)

    def account(self, account_id: str | None = None) -> Call[models.AdminAccount]:
        path = f"/v1/admin/accounts/{self._account(account_id)}"
        return Call("GET", path, "admin", _as(models.AdminAccount))

    def create_key(
        self, account_id: str | None = None, *, expires_at: Instant | None = None
    ) -> Call[models.NewKey]:
        # Not retried on 5xx: the API does not dedupe key creation, a retry could make two.
        path = f"/v1/admin/accounts/{self._account(account_id)}/keys"
        payload = body(expires_at=expires_at)
        return Call("POST", path, "admin", _as(models.NewKey), body=payload, retry_safe=False)

    def list_keys(self, account_id: str | None = None) -> Call[models.Json]:
        return Call("GET", f"/v1/admin/accounts/{self._account(account_id)}/keys", "admin", _json)

    def rotate_key(
        self, key_id: str, *, account_id: str | None = None, overlap_seconds: int | None = None
    ) -> Call[models.NewKey]:
        path = f"/v1/admin/accounts/{self._account(account_id)}/keys/{_segment(key_id)}/rotate"
        payload = body(overlap_seconds=overlap_seconds)
        return Call("POST", path, "admin", _as(models.NewKey), body=payload, retry_safe=False)

    def revoke_key(self, key_id: str, *, account_id: str | None = None) -> Call[None]:
        path = f"/v1/admin/accounts/{self._account(account_id)}/keys/{_segment(key_id)}"
        return Call("DELETE", path, "admin", _nothing)

    def dashboard_session(self, account_id: str | None = None) -> Call[models.DashboardSession]:
        path = f"/v1/admin/accounts/{self._account(account_id)}/dashboard-sessions"
        return Call("POST", path, "admin", _as(models.DashboardSession), retry_safe=False)

    def exchange_dashboard_session(self, token: str) -> Call[models.SessionKey]:
        """The dashboard page's trade of a sign-in link's token (the `session=` value of its
        fragment) for a customer key; no credential (the token is one), single-use."""
        payload = {"token": token}
        path = "/dashboard/session-exchange"
        return Call("POST", path, "none", _as(models.SessionKey), body=payload, retry_safe=False)

    # --- admin: commands (202 {commandId}; outcome via `command`) ------------------------------

    def grant(
        self,
        amount: int,
        *,
        account_id: str | None = None,
        name: str | None = None,
        bucket: BucketKind | None = None,
        priority: int | None = None,
        source: str | None = None,
        metadata: Mapping[str, str] | None = None,
        effective_at: Instant | None = None,
        expires_at: Instant | None = None,
        applies_to: Sequence[str] | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(
            amount=amount, name=name, bucket=bucket, priority=priority, source=source,
            metadata=dict(metadata) if metadata is not None else None,
            effective_at=effective_at, expires_at=expires_at,
            applies_to=list(applies_to) if applies_to is not None else None,
            occurred_at=occurred_at,
        )  # fmt: skip
        return self._command(account_id, "grants", payload, idempotency_key)

    def adjust(
        self,
        amount: int,
        *,
        account_id: str | None = None,
        reason: str | None = None,
        allow_negative: bool | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(
            amount=amount, reason=reason, allow_negative=allow_negative, occurred_at=occurred_at
        )
        return self._command(account_id, "adjustments", payload, idempotency_key)

    def refund(
        self,
        request_id: str,
        *,
        account_id: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(request_id=request_id, amount=amount, reason=reason, occurred_at=occurred_at)
        return self._command(account_id, "refunds", payload, idempotency_key)

    def void_grant(
        self,
        grant_id: str,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(occurred_at=occurred_at)
        return self._command(
            account_id, f"grants/{_segment(grant_id)}/void", payload, idempotency_key
        )

    def hold(
        self,
        hold_id: str,
        amount: int,
        expires_at: Instant,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(
            hold_id=hold_id, amount=amount, expires_at=expires_at, occurred_at=occurred_at
        )
        return self._command(account_id, "holds", payload, idempotency_key)

    def capture(
        self,
        hold_id: str,
        request_id: str,
        endpoint: str,
        *,
        amount: int | None = None,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(
            request_id=request_id, endpoint=endpoint, amount=amount, occurred_at=occurred_at
        )
        path = f"holds/{_segment(hold_id)}/capture"
        return self._command(account_id, path, payload, idempotency_key)

    def release(
        self,
        hold_id: str,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> Call[models.Accepted]:
        payload = body(occurred_at=occurred_at)
        path = f"holds/{_segment(hold_id)}/release"
        return self._command(account_id, path, payload, idempotency_key)

    def settings(
        self,
        *,
        account_id: str | None = None,
        low_balance_threshold: int | Unset | None = UNSET,
        auto_reload: Mapping[str, int] | Unset | None = UNSET,
        credit_limit: int | Unset | None = UNSET,
        grant_expiring_notice_s: int | Unset | None = UNSET,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
        **more: Any,
    ) -> Call[models.Accepted]:
        """Only the fields given are sent: one left out keeps its value, None clears it.
        `more`: settings this client does not name yet (sent as given)."""
        given = {
            "low_balance_threshold": low_balance_threshold, "auto_reload": auto_reload,
            "credit_limit": credit_limit, "grant_expiring_notice_s": grant_expiring_notice_s,
            **more,
        }  # fmt: skip
        payload = {name: value for name, value in given.items() if not isinstance(value, Unset)}
        payload.update(body(occurred_at=occurred_at))
        return self._command(account_id, "settings", payload, idempotency_key)

    def command(
        self, command_id: str, *, account_id: str | None = None
    ) -> Call[models.CommandStatus]:
        path = f"/v1/admin/commands/{_segment(command_id)}"
        return Call("GET", path, "admin", _as(models.CommandStatus), query(account_id=account_id))

    def command_poll(
        self, command_id: str, *, account_id: str | None = None
    ) -> Call[models.CommandStatus | None]:
        """`command` while waiting for it: 404 (not visible yet) answers None."""
        call = self.command(command_id, account_id=account_id)
        return Call(
            call.method, call.path, call.auth, _status_or_none, call.params,
            ok_statuses=frozenset({404}),
        )  # fmt: skip

    # --- admin: price book, tokens, webhooks, ingest ------------------------------------------

    def price_book(self) -> Call[models.Json]:
        return Call("GET", "/v1/admin/price-book", "admin", _json)

    def set_price_book(
        self,
        effective_at: Instant,
        prices: Mapping[str, int],
        *,
        default_credits: int,
    ) -> Call[models.Json]:
        # Each PUT appends a version: not retried after a 5xx (a second identical version).
        # `default_credits`: what an endpoint missing from `prices` costs (the API requires it).
        payload = {
            "effective_at": instant(effective_at), "prices": dict(prices),
            "default_credits": default_credits,
        }  # fmt: skip
        return Call("PUT", "/v1/admin/price-book", "admin", _json, body=payload, retry_safe=False)

    def create_admin_token(self, name: str, scopes: Sequence[str]) -> Call[models.Json]:
        payload = {"name": name, "scopes": list(scopes)}
        return Call("POST", "/v1/admin/tokens", "admin", _json, body=payload, retry_safe=False)

    def admin_tokens(self) -> Call[models.Json]:
        return Call("GET", "/v1/admin/tokens", "admin", _json)

    def revoke_admin_token(self, token_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/admin/tokens/{_segment(token_id)}", "admin", _nothing)

    def create_webhook(
        self,
        url: str,
        events: Sequence[str] | None = None,
        *,
        description: str | None = None,
    ) -> Call[models.NewWebhook]:
        """`events`: the alert types it receives; None or empty: every type. The API does not
        dedupe registrations: not retried after a 5xx (it could register two)."""
        payload = body(
            url=url, events=list(events) if events is not None else None, description=description
        )
        path = "/v1/admin/webhooks"
        return Call("POST", path, "admin", _as(models.NewWebhook), body=payload, retry_safe=False)

    def webhooks(self) -> Call[models.WebhookList]:
        return Call("GET", "/v1/admin/webhooks", "admin", _as(models.WebhookList))

    def delete_webhook(self, webhook_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/admin/webhooks/{_segment(webhook_id)}", "admin", _nothing)

    def webhook_deliveries(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Call[models.DeliveryPage]:
        path = f"/v1/admin/webhooks/{_segment(webhook_id)}/deliveries"
        parse = _as(models.DeliveryPage)
        return Call("GET", path, "admin", parse, query(limit=limit, cursor=cursor))

    def send_events(self, events: Sequence[Mapping[str, Any]]) -> Call[models.Json]:
        """HTTP ingest: usage events are idempotent by request_id, so retries are safe."""
        payload = {"events": [dict(event) for event in events]}
        return Call("POST", "/v1/events", "ingest", _json, body=payload)

    # --- shared ------------------------------------------------------------------------------

    def _account(self, given: str | None) -> str:
        return _segment(self.session.account_id(given))

    def _command(
        self, account_id: str | None, resource: str, payload: dict[str, Any], key: str | None
    ) -> Call[models.Accepted]:
        path = f"/v1/admin/accounts/{self._account(account_id)}/{resource}"
        accepted = cast(Any, _as(models.Accepted))
        return Call("POST", path, "admin", accepted, body=payload, headers=idempotency(key))
