"""Ledgers built by hand in the shape the core writes since issue 12 (scheduled grants and their
activation, overage payments, owed consumes), for the read models' tests: they must not depend
on the core producing them. `balance_after` and `seq` are kept by the builder.

`STORY` is one account's history touching every rule; `LEGACY` one written before issue 12
(grant entries without `granted`, 0-delta consumes flagged `beyond_credit_limit`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.ledger import EntryBucket, EntryReasonName, LedgerEntryMessage

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
SCAN = "POST /v1/scanner/scan"
REPORT = "GET /v1/reports/export"
Meta = dict[str, str | int | None]


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@dataclass
class Terms:
    kind: str
    effective_at: datetime
    expires_at: datetime | None
    priority: int


@dataclass
class Ledger:
    account_id: str
    entries: list[LedgerEntryMessage] = field(default_factory=list)
    terms: dict[str, Terms] = field(default_factory=dict)
    recorded_gap: timedelta = timedelta(seconds=1)  # recorded_at: T0 + 1 day + seq seconds
    recorded_base: datetime = T0 + timedelta(days=1)

    @property
    def balance(self) -> int:
        return self.entries[-1].balance_after if self.entries else 0

    def add(
        self,
        reason: EntryReasonName,
        delta: int,
        source: str,
        at: datetime,
        grant_id: str | None = None,
        metadata: Meta | None = None,
        reserved_delta: int = 0,
        recorded_at: datetime | None = None,
    ) -> LedgerEntryMessage:
        seq = len(self.entries) + 1
        bucket = None
        if grant_id is not None:
            terms = self.terms[grant_id]
            bucket = EntryBucket(grant_id=grant_id, kind=terms.kind)
            if reason == "grant":  # the bucket's terms ride on every grant entry naming it
                bucket = EntryBucket(
                    grant_id=grant_id, kind=terms.kind, expires_at=terms.expires_at,
                    effective_at=terms.effective_at, priority=terms.priority,
                )  # fmt: skip
        entry = LedgerEntryMessage(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.account_id}/{seq}")),
            account_id=self.account_id, seq=seq, delta=delta,
            balance_after=self.balance + delta, reason=reason, source=source, bucket=bucket,
            metadata=metadata or {}, reserved_delta=reserved_delta, occurred_at=at,
            recorded_at=recorded_at or self.recorded_base + seq * self.recorded_gap,
        )  # fmt: skip
        self.entries.append(entry)
        return entry

    def grant(
        self,
        grant_id: str,
        amount: int,
        kind: str,
        at: datetime,
        effective_at: datetime | None = None,
        expires_at: datetime | None = None,
        paid: int = 0,
        name: str | None = None,
        legacy: bool = False,
    ) -> None:
        """A grant command: scheduled when `effective_at` is after `at`; `paid` of an overage."""
        effective = effective_at or at
        priority = {"subscription": 10, "purchased": 20, "gift": 30}.get(kind, 40)
        self.terms[grant_id] = Terms(kind, effective, expires_at, priority)
        custom: Meta = {"name": name} if name else {}
        if legacy:
            self.add("grant", amount, f"grant:{grant_id}", at, grant_id, custom)
        elif effective > at:
            assert paid == 0, "a scheduled grant pays nothing at its issue"
            meta: Meta = {**custom, "granted": amount, "scheduled": amount}
            self.add("grant", 0, f"grant:{grant_id}", at, grant_id, meta)
        else:
            meta = {**custom, "granted": amount}
            self.add("grant", amount - paid, f"grant:{grant_id}", at, grant_id, meta)
            self._pay(grant_id, paid, at)

    def activate(self, grant_id: str, amount: int, paid: int = 0) -> None:
        at = self.terms[grant_id].effective_at
        self.add("grant", amount - paid, f"grant:{grant_id}", at, grant_id, {"activated": amount})
        self._pay(grant_id, paid, at)

    def _pay(self, grant_id: str, paid: int, at: datetime) -> None:
        if paid:
            meta: Meta = {"pays_overage": paid, "grant_id": grant_id}
            self.add("grant", paid, f"grant:{grant_id}", at, None, meta)

    def call(
        self,
        request_id: str,
        at: datetime,
        draws: list[tuple[str | None, int]],
        owed: int = 0,
        status: int = 200,
        endpoint: str = SCAN,
    ) -> None:
        """A usage call: one consume per draw (None: the pot), then the owed part; a 4xx/5xx
        call is refunded in full at once, last draw first."""
        meta: Meta = {"endpoint": endpoint, "key_id": "key_1", "status_code": status}
        for grant_id, amount in draws:
            self.add("consume", -amount, f"request:{request_id}", at, grant_id, meta)
        if owed:
            self.add("consume", -owed, f"request:{request_id}", at, None, {**meta, "owed": owed})
        if status >= 400:
            parts = [*draws, *([(None, owed)] if owed else [])]
            reason = "client_error" if status < 500 else "server_error"
            self.refund(request_id, at, at, parts[::-1], {**meta, "reason": reason}, endpoint)

    def refund(
        self,
        request_id: str,
        at: datetime,
        consumed_at: datetime,
        parts: list[tuple[str | None, int]],
        metadata: Meta | None = None,
        endpoint: str = SCAN,
        refundable: int | None = None,
    ) -> None:
        left = sum(a for _, a in parts) if refundable is None else refundable
        for grant_id, amount in parts:
            left -= amount
            meta: Meta = {
                **(metadata or {"reason": "bad call", "command_id": f"rf_{request_id}"}),
                "endpoint": endpoint, "consumed_at": consumed_at.isoformat(),
                "refundable_after": left,
            }  # fmt: skip
            self.add("refund", amount, f"refund:{request_id}", at, grant_id, meta)

    def row(self, entry: LedgerEntryMessage) -> dict[str, Any]:
        """The entry as a `ledger_entries` row."""
        bucket = entry.bucket
        terms = None
        if bucket is not None and entry.reason == "grant":
            terms = {
                "effective_at": bucket.effective_at.isoformat() if bucket.effective_at else None,
                "priority": bucket.priority, "applies_to": bucket.applies_to,
            }  # fmt: skip
        return {
            "account_id": entry.account_id, "seq": entry.seq, "entry_id": uuid.UUID(entry.id),
            "delta": entry.delta, "balance_after": entry.balance_after, "reason": entry.reason,
            "source": entry.source, "bucket_grant_id": bucket.grant_id if bucket else None,
            "bucket_kind": bucket.kind if bucket else None,
            "bucket_expires_at": bucket.expires_at if bucket else None, "bucket_terms": terms,
            "metadata": entry.metadata, "reserved_delta": entry.reserved_delta,
            "occurred_at": entry.occurred_at, "recorded_at": entry.recorded_at,
        }  # fmt: skip


def story(account_id: str = "story") -> Ledger:
    """Every shape of issue 12 in one account. Comments: balance after the step."""
    book = Ledger(account_id)
    book.grant("sub", 100, "subscription", T0, expires_at=T0 + timedelta(days=30), name="Plan")
    book.grant("next", 50, "purchased", T0, effective_at=hours(24))  # scheduled: 100
    book.call("r1", hours(1), [("sub", 30)])  # 70
    book.call("r2", hours(2), [("sub", 70)], owed=10)  # -10: owed 10
    book.call("f1", hours(3), [], owed=5, status=500)  # owed, then refunded: -10
    book.activate("next", 50, paid=10)  # at hour 24: +40 in `next`, +10 pays the overage: 40
    book.add("adjustment", 3, "adjustment:adj1", hours(24.5), None, {"reason": "goodwill"})  # 43
    book.call("r3", hours(25), [("next", 40), (None, 3)], owed=2, endpoint=REPORT)  # -2
    book.grant("gift", 20, "gift", hours(48), paid=2)  # 18 in `gift`, 2 pays: 18
    hold: Meta = {"hold_id": "h1", "amount": 10}
    book.add("hold", 0, "hold:h1", hours(48.5), None, hold, reserved_delta=10)
    released: Meta = {**hold, "reason": "captured", "captured": 6}
    book.add("release", 0, "hold:h1", hours(49), None, released, reserved_delta=-10)
    book.add("consume", -6, "request:cap1", hours(49), "gift", {"endpoint": SCAN, "hold_id": "h1"})
    book.refund("r1", hours(50), hours(1), [("sub", 30)])  # r1 refunded in full: 42
    book.grant("later", 40, "promotional", hours(50), effective_at=hours(240))  # scheduled
    book.add("void", 0, "void:v1", hours(51), "later", {"command_id": "v1"})  # voided unspent
    book.add("expiry", -30, "expiry:sub", T0 + timedelta(days=30), "sub", {})  # 12
    return book


def legacy(account_id: str = "legacy") -> Ledger:
    """Entries as written before issue 12: grants without `granted`, and calls beyond the credit
    limit as 0-delta consumes (charged nothing: no scan)."""
    book = Ledger(account_id)
    book.grant("old", 10, "purchased", T0, legacy=True)
    book.call("o1", hours(1), [("old", 4)])  # 6
    flagged: Meta = {"endpoint": SCAN, "key_id": None, "status_code": 200,
                     "flag": "beyond_credit_limit", "uncharged": 3}  # fmt: skip
    book.call("o2", hours(2), [("old", 6)])  # 0
    book.add("consume", 0, "request:o2", hours(2), None, flagged)  # the rest: uncharged
    book.add("consume", 0, "request:o3", hours(3), None, flagged)  # charged nothing
    return book


INSERT_ENTRY = """
INSERT INTO ledger_entries (account_id, seq, entry_id, delta, balance_after, reason, source,
                            bucket_grant_id, bucket_kind, bucket_expires_at, bucket_terms,
                            metadata, reserved_delta, occurred_at, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
COLUMNS = (
    "account_id", "seq", "entry_id", "delta", "balance_after", "reason", "source",
    "bucket_grant_id", "bucket_kind", "bucket_expires_at", "bucket_terms", "metadata",
    "reserved_delta", "occurred_at", "recorded_at",
)  # fmt: skip


async def insert_books(db: Any, books: Iterable[Ledger]) -> None:
    """Write the books' entries straight into `ledger_entries` (`db`: an asyncpg pool)."""
    for book in books:
        for entry in book.entries:
            row = book.row(entry)
            await db.execute(INSERT_ENTRY, *(row[c] for c in COLUMNS))
