/** Compile-time checks: generated types are used where the OpenAPI document is specific, the
 * contract's shapes where it is not (this file fails `npm run build` when that breaks). */
import assert from "node:assert/strict";
import { it } from "node:test";

import type { AnswerOf, Balance, BodyOf, QueryOf } from "../src/index.js";

type Equal<A, B> = (<V>() => V extends A ? 1 : 2) extends <V>() => V extends B ? 1 : 2 ? true : false;

// a body the document describes: the generated type (fallback `never` is not used)
type GrantBody = BodyOf<"/v1/admin/accounts/{account_id}/grants", "post", never>;
const grantAmount: Equal<GrantBody["amount"], number> = true;
// query parameters the document describes, under their wire names
type LedgerQuery = QueryOf<"/v1/credits/ledger", "get", never>;
const ledgerLimit: Equal<NonNullable<LedgerQuery["limit"]>, number> = true;
// an endpoint the document does not have (yet): the fallback
const explain: Equal<AnswerOf<"/v1/not/in/the/document", "get", { x: 1 }>, { x: 1 }> = true;
// an answer the document leaves an open object: the contract's shape, else the generated one
type BalanceAnswer = AnswerOf<"/v1/credits/balance", "get", Balance>;
const balance: Equal<BalanceAnswer["available"], number> = true;

// the newer reads: the generated answers
type Daily = AnswerOf<"/v1/credits/balance/daily", "get", never>;
const dailyBalance: Equal<Daily["days"][number]["balance"], number> = true;
type Deliveries = AnswerOf<"/v1/admin/webhooks/{webhook_id}/deliveries", "get", never>;
const deliveries: Equal<Deliveries["nextCursor"], string | null> = true;

it("types resolve to the generated or the contract's shapes", () => {
  const all = [grantAmount, ledgerLimit, explain, balance, dailyBalance, deliveries];
  assert.deepEqual(all, [true, true, true, true, true, true]);
});
