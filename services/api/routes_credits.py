"""Customer reads: the balance and the check (the hot path: most requests to them are answered by
the middleware of fastreads.py with the same functions). Every query names the caller's account:
another account's data is unreachable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from schemas.common import MAX_CREDITS
from services.api.models.reads import Balance, Check
from services.api.problems import Problem
from services.api.read_params import (
    REMAINING_HEADER,
    CustomerDep,
    read_responses,
)
from services.api.reads.balance import (
    balance_answer,
    check_answer,
    read_state_as_customer,
)
from services.api.reads.balance_as_of import AsOfParam, ByParam, balance_as_of_response
from services.api.reads.freshness import (
    BALANCE,
    MinSeq,
    wait_if_asked,
)

router = APIRouter(tags=["credits"])


# Balance and check answer a Response of their own (orjson, no re-validation of the dict);
# `response_model` keeps the document's 200 schema. Most requests to them never get here: the
# middleware of fastreads.py answers them with the same functions.
@router.get(
    "/v1/credits/balance",
    response_model=Balance,
    operation_id="getBalance",
    summary="The account's balance: spendable, reserved, available, scheduled, owed",
    responses=read_responses(headers=REMAINING_HEADER),
)
async def get_balance(
    request: Request,
    caller: CustomerDep,
    min_seq: MinSeq = None,
    as_of: AsOfParam = None,
    by: ByParam = None,
) -> Response:
    """Spendable credit now (services/core/spend.py): scheduled grants are not in it, what is
    owed is below zero (`overage`); the buckets' balances add up to `balance`. With `as_of`
    (or `by`): the balance as it stood then, as `creditledger balance --as-of --by` answers."""
    if as_of is not None or by is not None:
        now = datetime.now(UTC)
        return await balance_as_of_response(request, caller.account_id, as_of, by, min_seq, now)
    await wait_if_asked(request, BALANCE, caller.account_id, min_seq)
    stored = await read_state_as_customer(request.app.state.pool, caller.account_id)
    body, headers = balance_answer(caller.account_id, stored, min_seq, datetime.now(UTC))
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get(
    "/v1/credits/check",
    response_model=Check,
    operation_id="checkCredits",
    summary="Whether a call of `cost` credits on `endpoint` would be allowed now",
    responses=read_responses(402, headers=REMAINING_HEADER),
)
async def check_credits(
    request: Request,
    caller: CustomerDep,
    cost: Annotated[int, Query(ge=0, le=MAX_CREDITS)],
    endpoint: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    min_seq: MinSeq = None,
) -> Response:
    """200 when the writer would charge a call of `cost` on `endpoint` now from credit it may
    spend (honouring `applies_to`) within the credit limit, else 402 (problem+json that still
    says `available`). The same rule as the writer's drawdown: services/core/spend.quote."""
    await wait_if_asked(request, BALANCE, caller.account_id, min_seq)
    stored = await read_state_as_customer(request.app.state.pool, caller.account_id)
    answer = check_answer(stored, cost, endpoint, min_seq, datetime.now(UTC))
    if not answer.allowed:
        raise Problem(402, "insufficient-credits", answer.detail, answer.headers, answer.body)
    rendered = orjson.dumps(answer.body)
    return Response(rendered, media_type="application/json", headers=answer.headers)
