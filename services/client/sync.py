"""`CreditLedgerClient`: the blocking client (httpx.Client). Each method sends one `Call` of
endpoints.py through the shared core; see core.py for retries and `credits_remaining`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from services.client import models
from services.client.core import (
    Call,
    ClientConfigError,
    Instant,
    RetryPolicy,
    Send,
    Session,
)
from services.client.endpoints import (
    UNSET,
    BucketKind,
    By,
    Endpoints,
    GroupBy,
    Period,
    Unset,
)
from services.client.waiting import Deadline, settled

T = TypeVar("T")


class CreditLedgerClient:
    """The creditledger HTTP API. `api_key` for customer reads; `admin_token` for admin calls
    (with `account`, also customer reads of that account: a `credits:read` service token);
    `account` is the default account of admin calls. `http` shares a caller's httpx.Client
    (then the caller closes it)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        account: str | None = None,
        admin_token: str | None = None,
        ingest_token: str | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._session = Session(
            api_key=api_key, account=account, admin_token=admin_token,
            ingest_token=ingest_token, retry=retry or RetryPolicy(),
        )  # fmt: skip
        self._calls = Endpoints(self._session)
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_s)

    @property
    def credits_remaining(self) -> int | None:
        """Available credits as the last answer's `X-Credits-Remaining` said (None: none yet)."""
        return self._session.credits_remaining

    @property
    def ledger_seq(self) -> int | None:
        """The account's ledger seq the last read reflected (`X-Ledger-Seq`)."""
        return self._session.ledger_seq

    def send(self, call: Call[T]) -> T:
        """Carry out a call: the core decides, this only does the I/O."""
        exchange = self._session.exchange(call)
        step = next(exchange)
        while True:
            try:
                if isinstance(step, Send):
                    try:
                        response = self._request(step)
                    except httpx.TransportError as error:
                        step = exchange.throw(error)
                        continue
                    step = exchange.send(response)
                else:
                    time.sleep(step.seconds)
                    step = exchange.send(None)
            except StopIteration as done:
                result: T = done.value
                return result

    def _request(self, step: Send) -> httpx.Response:
        return self._http.request(
            step.method, step.url, params=step.params, headers=step.headers,
            json=step.json if step.json is not None else None,
        )  # fmt: skip

    def pages(self, call: Call[Any]) -> Iterator[Any]:
        """Every page of a paged list, following its cursor."""
        following: Call[Any] | None = call
        while following is not None:
            page = self.send(following)
            yield page
            following = Endpoints.next_page(following, page)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> CreditLedgerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- customer reads (`account`: the account a service token reads) ----------------------

    def balance(
        self,
        *,
        as_of: Instant | None = None,
        by: By | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Balance:
        """Spendable credit now; with `as_of` (and `by`: occurred or recorded) as it stood then."""
        call = self._calls.balance(as_of=as_of, by=by, min_seq=min_seq, account=account)
        return self.send(call)

    def balance_explain(
        self,
        *,
        as_of: Instant | None = None,
        by: By | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.BalanceExplained:
        """Why the balance is what it is: each grant's part, the recent consumes' draws."""
        call = self._calls.balance_explain(as_of=as_of, by=by, min_seq=min_seq, account=account)
        return self.send(call)

    def daily_balance(
        self, *, days: int | None = None, account: str | None = None
    ) -> models.BalanceHistory:
        """The balance at the end of each of the last `days` UTC days, by event time."""
        return self.send(self._calls.daily_balance(days=days, account=account))

    def check(
        self,
        cost: int,
        endpoint: str | None = None,
        *,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Check:
        """`allowed` and `available`; a 402 is an answer here (allowed False), not an error."""
        return self.send(self._calls.check(cost, endpoint, min_seq=min_seq, account=account))

    def activity(
        self,
        *,
        from_: Instant | None = None,
        to: Instant | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Json:
        call = self._calls.activity(from_=from_, to=to, min_seq=min_seq, account=account)
        return self.send(call)

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
    ) -> models.LedgerPage:
        return self.send(
            self._calls.ledger(
                from_=from_, to=to, reason=reason, limit=limit, page=page, offset=offset,
                cursor=cursor, expand=expand, min_seq=min_seq, account=account,
            )
        )  # fmt: skip

    def iter_ledger(
        self,
        *,
        from_: Instant | None = None,
        to: Instant | None = None,
        reason: str | Sequence[str] | None = None,
        limit: int | None = None,
        expand: str | Sequence[str] | None = None,
        account: str | None = None,
    ) -> Iterator[models.LedgerEntry]:
        """Every entry (newest first), page after page by `nextCursor`."""
        call = self._calls.ledger(
            from_=from_, to=to, reason=reason, limit=limit, expand=expand, account=account
        )
        for page in self.pages(call):
            yield from page.get("data", [])

    def ledger_entry(self, entry_id: str, *, account: str | None = None) -> models.LedgerEntry:
        return self.send(self._calls.ledger_entry(entry_id, account=account))

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
    ) -> models.GrantsPage:
        return self.send(
            self._calls.grants(
                covering_date=covering_date, starting_at=starting_at,
                effective_before=effective_before, include_ledgers=include_ledgers,
                include_balance=include_balance, include_archived=include_archived,
                limit=limit, next_page=next_page, min_seq=min_seq, account=account,
            )
        )  # fmt: skip

    def iter_grants(
        self,
        *,
        covering_date: Instant | None = None,
        starting_at: Instant | None = None,
        effective_before: Instant | None = None,
        include_balance: bool | None = None,
        include_archived: bool | None = None,
        limit: int | None = None,
        account: str | None = None,
    ) -> Iterator[models.Json]:
        """Every grant matching the filters, page after page by `nextPage`."""
        call = self._calls.grants(
            covering_date=covering_date, starting_at=starting_at,
            effective_before=effective_before, include_balance=include_balance,
            include_archived=include_archived, limit=limit, account=account,
        )  # fmt: skip
        for page in self.pages(call):
            yield from page.get("data", [])

    def get_grant(
        self,
        grant_id: str,
        *,
        include_ledgers: bool | None = None,
        include_balance: bool | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Json:
        return self.send(
            self._calls.get_grant(
                grant_id, include_ledgers=include_ledgers, include_balance=include_balance,
                min_seq=min_seq, account=account,
            )
        )  # fmt: skip

    def usage(
        self,
        *,
        group_by: GroupBy | None = None,
        from_: Instant | None = None,
        to: Instant | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Json:
        call = self._calls.usage(
            group_by=group_by, from_=from_, to=to, min_seq=min_seq, account=account
        )
        return self.send(call)

    def summary(
        self,
        *,
        period: Period | None = None,
        min_seq: int | None = None,
        account: str | None = None,
    ) -> models.Json:
        return self.send(self._calls.summary(period=period, min_seq=min_seq, account=account))

    def account_settings(self, *, account: str | None = None) -> models.AccountSettings:
        """Alert thresholds, auto-reload and credit limit, as the writer applies them."""
        return self.send(self._calls.account_settings(account=account))

    def alerts(
        self, *, days: int | None = None, limit: int | None = None, account: str | None = None
    ) -> models.RecentAlerts:
        """Recent alerts (low balance, depleted, overage, …), newest first."""
        return self.send(self._calls.alerts(days=days, limit=limit, account=account))

    # --- admin: accounts and keys -------------------------------------------------------------

    def create_account(self, account_id: str, name: str) -> models.Json:
        return self.send(self._calls.create_account(account_id, name))

    def accounts(
        self, *, limit: int | None = None, next_page: str | None = None
    ) -> models.AccountsPage:
        return self.send(self._calls.accounts(limit=limit, next_page=next_page))

    def iter_accounts(self, *, limit: int | None = None) -> Iterator[models.AdminAccount]:
        for page in self.pages(self._calls.accounts(limit=limit)):
            yield from page.get("data", [])

    def account(self, account_id: str | None = None) -> models.AdminAccount:
        return self.send(self._calls.account(account_id))

    def create_key(
        self, account_id: str | None = None, *, expires_at: Instant | None = None
    ) -> models.NewKey:
        return self.send(self._calls.create_key(account_id, expires_at=expires_at))

    def list_keys(self, account_id: str | None = None) -> models.Json:
        return self.send(self._calls.list_keys(account_id))

    def rotate_key(
        self, key_id: str, *, account_id: str | None = None, overlap_seconds: int | None = None
    ) -> models.NewKey:
        return self.send(
            self._calls.rotate_key(key_id, account_id=account_id, overlap_seconds=overlap_seconds)
        )

    def revoke_key(self, key_id: str, *, account_id: str | None = None) -> None:
        self.send(self._calls.revoke_key(key_id, account_id=account_id))

    def dashboard_session(self, account_id: str | None = None) -> models.DashboardSession:
        return self.send(self._calls.dashboard_session(account_id))

    def exchange_dashboard_session(self, token: str) -> models.SessionKey:
        """Trade a dashboard link's token (its fragment's `session=`) once for a key."""
        return self.send(self._calls.exchange_dashboard_session(token))

    # --- admin: commands ----------------------------------------------------------------------

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
    ) -> models.Accepted:
        return self.send(
            self._calls.grant(
                amount, account_id=account_id, name=name, bucket=bucket, priority=priority,
                source=source, metadata=metadata, effective_at=effective_at,
                expires_at=expires_at, applies_to=applies_to, occurred_at=occurred_at,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip

    def adjust(
        self,
        amount: int,
        *,
        account_id: str | None = None,
        reason: str | None = None,
        allow_negative: bool | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> models.Accepted:
        return self.send(
            self._calls.adjust(
                amount, account_id=account_id, reason=reason, allow_negative=allow_negative,
                occurred_at=occurred_at, idempotency_key=idempotency_key,
            )
        )  # fmt: skip

    def refund(
        self,
        request_id: str,
        *,
        account_id: str | None = None,
        amount: int | None = None,
        reason: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> models.Accepted:
        return self.send(
            self._calls.refund(
                request_id, account_id=account_id, amount=amount, reason=reason,
                occurred_at=occurred_at, idempotency_key=idempotency_key,
            )
        )  # fmt: skip

    def void_grant(
        self,
        grant_id: str,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> models.Accepted:
        return self.send(
            self._calls.void_grant(
                grant_id, account_id=account_id, occurred_at=occurred_at,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip

    def hold(
        self,
        hold_id: str,
        amount: int,
        expires_at: Instant,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> models.Accepted:
        return self.send(
            self._calls.hold(
                hold_id, amount, expires_at, account_id=account_id, occurred_at=occurred_at,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip

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
    ) -> models.Accepted:
        return self.send(
            self._calls.capture(
                hold_id, request_id, endpoint, amount=amount, account_id=account_id,
                occurred_at=occurred_at, idempotency_key=idempotency_key,
            )
        )  # fmt: skip

    def release(
        self,
        hold_id: str,
        *,
        account_id: str | None = None,
        occurred_at: Instant | None = None,
        idempotency_key: str | None = None,
    ) -> models.Accepted:
        return self.send(
            self._calls.release(
                hold_id, account_id=account_id, occurred_at=occurred_at,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip

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
    ) -> models.Accepted:
        return self.send(
            self._calls.settings(
                account_id=account_id, low_balance_threshold=low_balance_threshold,
                auto_reload=auto_reload, credit_limit=credit_limit,
                grant_expiring_notice_s=grant_expiring_notice_s, occurred_at=occurred_at,
                idempotency_key=idempotency_key, **more,
            )
        )  # fmt: skip

    def command(self, command_id: str, *, account_id: str | None = None) -> models.CommandStatus:
        return self.send(self._calls.command(command_id, account_id=account_id))

    def wait_for_command(
        self,
        command_id: str,
        *,
        account_id: str | None = None,
        timeout_s: float = 30.0,
        poll_s: float = 0.1,
    ) -> models.CommandStatus:
        """Poll `command` until applied or rejected (returned); TimeoutError at the deadline.
        A 404 while polling is "not visible yet" (just published), not an error."""
        deadline = Deadline(timeout_s, f"command {command_id} to be applied or rejected")
        poll = self._calls.command_poll(command_id, account_id=account_id)
        while True:
            status = self.send(poll)
            if status is not None and settled(status):
                return status
            time.sleep(deadline.next_wait_s(poll_s))

    # --- admin: price book, tokens, webhooks, ingest -------------------------------------------

    def price_book(self) -> models.Json:
        return self.send(self._calls.price_book())

    def set_price_book(
        self,
        effective_at: Instant,
        prices: Mapping[str, int],
        *,
        default_credits: int,
    ) -> models.Json:
        return self.send(
            self._calls.set_price_book(effective_at, prices, default_credits=default_credits)
        )

    def create_admin_token(self, name: str, scopes: Sequence[str]) -> models.Json:
        return self.send(self._calls.create_admin_token(name, scopes))

    def admin_tokens(self) -> models.Json:
        return self.send(self._calls.admin_tokens())

    def revoke_admin_token(self, token_id: str) -> None:
        self.send(self._calls.revoke_admin_token(token_id))

    def create_webhook(
        self,
        url: str,
        events: Sequence[str] | None = None,
        *,
        description: str | None = None,
    ) -> models.NewWebhook:
        """`events`: alert types it receives (None: every type); `secret` is answered once."""
        return self.send(self._calls.create_webhook(url, events, description=description))

    def webhooks(self) -> models.WebhookList:
        return self.send(self._calls.webhooks())

    def delete_webhook(self, webhook_id: str) -> None:
        self.send(self._calls.delete_webhook(webhook_id))

    def webhook_deliveries(
        self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> models.DeliveryPage:
        return self.send(self._calls.webhook_deliveries(webhook_id, limit=limit, cursor=cursor))

    def iter_webhook_deliveries(
        self, webhook_id: str, *, limit: int | None = None
    ) -> Iterator[models.Json]:
        """Every delivery of an endpoint (newest first), page after page by `nextCursor`."""
        call = self._calls.webhook_deliveries(webhook_id, limit=limit)
        for page in self.pages(call):
            yield from page.get("data", [])

    def send_events(self, events: Sequence[Mapping[str, Any]]) -> models.Json:
        return self.send(self._calls.send_events(events))


__all__ = ["ClientConfigError", "CreditLedgerClient"]
