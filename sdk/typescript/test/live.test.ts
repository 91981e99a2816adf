/**
 * Against a LIVE creditledger API: CREDITLEDGER_API_URL and CREDITLEDGER_ADMIN_TOKEN name it
 * (tests/integration/test_clients.py starts one and runs these). Each run makes its own account.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { CreditLedgerClient, ProblemError } from "../src/index.js";
import type { Balance, LedgerEntry } from "../src/index.js";

const URL_ = process.env["CREDITLEDGER_API_URL"];
const ADMIN_TOKEN = process.env["CREDITLEDGER_ADMIN_TOKEN"];
const DEADLINE_MS = 30_000;
const GRANTS = [40, 50, 60];
const SCAN_CREDITS = 7;

function required(name: string, value: string | undefined): string {
  assert.ok(value, `${name} must name the live API (see tests/integration/test_clients.py)`);
  return value;
}

async function until<R>(what: string, probe: () => Promise<R | undefined>): Promise<R> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const result = await probe();
    if (result !== undefined) return result;
    assert.ok(Date.now() < deadline, `waited ${DEADLINE_MS} ms for ${what}`);
    await sleep(100);
  }
}

describe("against the live API", () => {
  let baseUrl = "";
  let admin: CreditLedgerClient;
  const account = `ts_${randomUUID().slice(0, 8)}`;

  before(() => {
    baseUrl = required("CREDITLEDGER_API_URL", URL_);
    admin = new CreditLedgerClient(baseUrl, {
      adminToken: required("CREDITLEDGER_ADMIN_TOKEN", ADMIN_TOKEN),
    });
  });

  it("reads a balance, grants credits, pages the ledger and tracks X-Credits-Remaining", async () => {
    await admin.createAccount({ account_id: account, name: "TypeScript SDK test" });
    const key = await admin.createKey(account);
    assert.match(key.secret, /\S{20,}/);
    const customer = new CreditLedgerClient(baseUrl, { apiKey: key.secret });

    const empty = (await customer.balance()) as Balance;
    assert.equal(empty.accountId, account);
    assert.equal(empty.balance, 0);
    assert.equal(customer.creditsRemaining, 0);

    for (const [n, amount] of GRANTS.entries()) {
      const accepted = await admin.grant(account, {
        amount,
        name: `pack ${n}`,
        source: `invoice_ts_${n}`,
      });
      const outcome = await admin.waitForCommand(accepted.commandId, { timeoutMs: DEADLINE_MS });
      assert.equal(outcome.status, "applied", JSON.stringify(outcome));
    }
    const total = GRANTS.reduce((a, b) => a + b, 0);
    const granted = await until("the grants in the balance", async () => {
      const seen = (await customer.balance()) as Balance;
      return seen.balance === total ? seen : undefined;
    });
    assert.equal(granted.grantedTotal, total);
    assert.equal(customer.creditsRemaining, total);

    // a billable call (HTTP ingest), then the balance read shows it in X-Credits-Remaining
    await admin.sendEvents([
      {
        request_id: randomUUID(),
        account_id: account,
        key_id: key.keyId,
        endpoint: "POST /v1/scanner/scan",
        status_code: 200,
        occurred_at: new Date().toISOString(),
        credits: SCAN_CREDITS,
      },
    ]);
    const spent = total - SCAN_CREDITS;
    await until("the scan in the balance", async () => {
      const seen = (await customer.balance()) as Balance;
      return seen.available === spent ? seen : undefined;
    });
    assert.equal(customer.creditsRemaining, spent);

    const first = await customer.ledger({ limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(first.hasMore, true);
    assert.ok(first.nextCursor);
    const entries: LedgerEntry[] = [];
    for await (const entry of customer.ledgerEntries({ limit: 2 })) entries.push(entry);
    assert.deepEqual(
      entries.map((e) => e.seq),
      [4, 3, 2, 1],
    );
    assert.deepEqual(
      entries.map((e) => e.delta),
      [-SCAN_CREDITS, ...[...GRANTS].reverse()],
    );
    assert.deepEqual(
      entries.map((e) => e.reason),
      ["consume", "grant", "grant", "grant"],
    );

    assert.deepEqual(await customer.check(10, "POST /v1/scanner/scan"), {
      allowed: true,
      available: spent,
    });
    const refused = await customer.check(total);
    assert.equal(refused.allowed, false);
    assert.equal(refused.available, spent);
    assert.equal(customer.creditsRemaining, spent);
  });

  it("throws typed problems", async () => {
    const stranger = new CreditLedgerClient(baseUrl, { apiKey: "cl_live_not_a_key_at_all" });
    await assert.rejects(stranger.balance(), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 401);
      assert.match(error.type, /\//);
      assert.ok(error.detail.length > 0);
      return true;
    });
    await assert.rejects(admin.command(`never-${randomUUID()}`), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 404);
      assert.equal(error.slug, "not-found");
      return true;
    });
    await assert.rejects(admin.grant(account, { amount: -5 }), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 422);
      assert.ok(Array.isArray(error.extra["errors"]));
      return true;
    });
  });
});
