"""`GET /v1/credits/balance/explain`: why the balance is what it is (contract v1.1).

Per grant what came in and what left (`granted`, `consumed`, `refunded`, `expired`, `voided`,
`adjusted`, `remaining`), its place in the drawdown order and why; what is owed and why; the
recent consumes and the buckets each drew. The figures are services/core/explain.py's over the
ledger as it stood at `as_of` on the `by` clock (the entries `creditledger balance --as-of --by`
folds: services/api/reads/explain.py), with what event time had made due by then applied, as
the balance applies it: the `remaining`s plus `unbucketed` minus `overage` equal `balance`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from services.api.auth import Caller, customer
from services.api.read_params import read_responses
from services.api.reads.balance_as_of import AsOfParam, ByParam
from services.api.reads.common import iso, parse_instant
from services.api.reads.explain import explain_at
from services.api.reads.freshness import LEDGER, MinSeq, fresh_read
from services.core.explain import ConsumeExplained, Explanation, GrantExplained

router = APIRouter(tags=["credits"])
CustomerDep = Annotated[Caller, Depends(customer)]


class GrantWhy(BaseModel):
    grantId: str
    kind: str
    name: str | None
    amount: int = Field(description="the grant's whole amount")
    granted: int = Field(description="credit that became spendable in it")
    paidOverage: int = Field(description="of `amount`, what paid off what was owed")
    scheduled: int = Field(description="of `amount`, not yet effective")
    consumed: int
    refunded: int
    expired: int
    voided: int
    adjusted: int = Field(description="taken by negative adjustments")
    remaining: int = Field(
        description="granted - consumed + refunded - expired - voided - adjusted"
    )
    status: str = Field(
        description="spendable, scheduled, not_yet_effective, spent, expired or voided"
    )
    drawOrder: int | None = Field(description="1 = drawn first; null: not spendable now")
    why: str
    priority: int
    effectiveAt: str | None
    expiresAt: str | None
    appliesTo: list[str] | None
    grantedAt: str | None


class DrawWhy(BaseModel):
    grantId: str | None = Field(description="null: credit tied to no grant")
    amount: int


class ConsumeWhy(BaseModel):
    requestId: str
    credits: int = Field(description="the call's whole price: its draws plus what it owed")
    draws: list[DrawWhy]
    owed: int
    refunded: int
    endpoint: str | None
    occurredAt: str | None


class BalanceExplained(BaseModel):
    accountId: str
    asOf: str | None
    by: str
    balance: int
    overage: int = Field(description="owed (>= 0)")
    overageWhy: str
    unbucketed: int = Field(description="credit tied to no grant")
    scheduled: int
    grants: list[GrantWhy] = Field(description="spendable ones in drawdown order, then the rest")
    recentConsumes: list[ConsumeWhy] = Field(description="the last 20, newest first")
    ledgerSeq: int


def _grant(g: GrantExplained) -> GrantWhy:
    return GrantWhy(
        grantId=g.grant_id, kind=g.kind.value, name=g.name, amount=g.amount, granted=g.granted,
        paidOverage=g.paid_overage, scheduled=g.scheduled, consumed=g.consumed,
        refunded=g.refunded, expired=g.expired, voided=g.voided, adjusted=g.adjusted,
        remaining=g.remaining, status=g.status, drawOrder=g.draw_order, why=g.why,
        priority=g.priority, effectiveAt=iso(g.effective_at), expiresAt=iso(g.expires_at),
        appliesTo=list(g.applies_to) if g.applies_to is not None else None,
        grantedAt=iso(g.granted_at),
    )  # fmt: skip


def _consume(c: ConsumeExplained) -> ConsumeWhy:
    return ConsumeWhy(
        requestId=c.request_id, credits=c.credits,
        draws=[DrawWhy(grantId=d.grant_id, amount=d.amount) for d in c.draws], owed=c.owed,
        refunded=c.refunded, endpoint=c.endpoint, occurredAt=iso(c.occurred_at),
    )  # fmt: skip


def explained_json(explanation: Explanation, by: str) -> BalanceExplained:
    def drawn_first(g: GrantExplained) -> tuple[bool, int, int]:
        return (g.draw_order is None, g.draw_order or 0, g.granted_seq)

    return BalanceExplained(
        accountId=explanation.account_id, asOf=iso(explanation.at), by=by,
        balance=explanation.balance, overage=explanation.overage,
        overageWhy=explanation.overage_why, unbucketed=explanation.unbucketed,
        scheduled=explanation.scheduled,
        grants=[_grant(g) for g in sorted(explanation.grants, key=drawn_first)],
        recentConsumes=[_consume(c) for c in explanation.recent_consumes],
        ledgerSeq=explanation.seq,
    )  # fmt: skip


@router.get(
    "/v1/credits/balance/explain",
    response_model=BalanceExplained,
    operation_id="explainBalance",
    summary="Why the balance is what it is",
    responses=read_responses(),
)
async def explain_balance(
    request: Request,
    response: Response,
    caller: CustomerDep,
    as_of: AsOfParam = None,
    by: ByParam = None,
    min_seq: MinSeq = None,
) -> BalanceExplained:
    """Per grant what came in and what left, its place in the drawdown order and why; what is
    owed and why; the recent consumes with the buckets each drew. `as_of` (default now) and
    `by` (`recorded`, the default, or `occurred`) as on `GET /v1/credits/balance`."""
    now = datetime.now(UTC)
    at, axis = parse_instant(as_of, "as_of"), by or "recorded"
    async with fresh_read(request, LEDGER, caller.account_id, min_seq) as (conn, fresh):
        explanation = await explain_at(conn, caller.account_id, at, axis, now)
    fresh.stamp(response)
    return explained_json(explanation, axis)
