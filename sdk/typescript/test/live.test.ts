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
/** a webhook receiver on 127.0.0.1 answering 200 (test_clients.py runs one) */
const HOOK_URL = process.env["CREDITLEDGER_HOOK_URL"];
const DEADLINE_MS = 30_000;
const GRANTS = [40, 50, 60];
const SCAN_CREDITS = 7;

/** The API's own answer, without the client: a plain GET. */
async function raw(baseUrl: string, path: string, token: string): Promise<unknown> {
  const response = await fetch(baseUrl + path, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

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

    const allowed = await customer.check(10, "POST /v1/scanner/scan");
    assert.deepEqual(
      [allowed.allowed, allowed.available, allowed.cost, allowed.endpoint, allowed.owed],
      [true, spent, 10, "POST /v1/scanner/scan", 0],
    );
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
  it("service tokens, accounts, explain, webhooks, dashboard sessions and the account reads", async () => {
    // 20 granted, then (after `mid`) 10; threshold 25; a scan of 7: 23, one low-balance alert
    const mine = `ts_mine_${randomUUID().slice(0, 8)}`;
    const other = `ts_other_${randomUUID().slice(0, 8)}`;
    const left = 20 + 10 - SCAN_CREDITS;
    const hook = await admin.createWebhook({
      url: required("CREDITLEDGER_HOOK_URL", HOOK_URL),
      events: ["low_balance"],
      description: "TypeScript SDK test",
    });
    assert.ok(hook.secret);
    const listed = await admin.webhooks();
    const seen = listed.data.find((w) => w.id === hook.id);
    assert.ok(seen && !("secret" in seen));

    await admin.createAccount({ account_id: mine, name: "Mine" });
    await admin.createAccount({ account_id: other, name: "Other" });
    const applied = async (accepted: { commandId: string }) =>
      assert.equal((await admin.waitForCommand(accepted.commandId)).status, "applied");
    await applied(await admin.grant(mine, { amount: 20 }));
    const mid = new Date();
    await sleep(10); // a clock tick between the instant and the next grant's recording
    await applied(await admin.grant(mine, { amount: 10 }));
    await applied(await admin.grant(other, { amount: 70 }));
    await applied(await admin.settings(mine, { low_balance_threshold: 25 }));
    await admin.sendEvents([
      {
        request_id: randomUUID(),
        account_id: mine,
        endpoint: "POST /v1/scanner/scan",
        status_code: 200,
        occurred_at: new Date().toISOString(),
        credits: SCAN_CREDITS,
      },
    ]);

    // a service token (credits:read) minted through the admin API reads both accounts
    const token = await admin.createAdminToken({ name: "ts-reader", scopes: ["credits:read"] });
    const svc = new CreditLedgerClient(baseUrl, { adminToken: token.secret, account: mine });
    await until("the scan in the balance", async () =>
      ((await svc.balance()) as Balance).balance === left ? true : undefined,
    );
    const theirs = svc.forAccount(other);
    assert.equal(((await theirs.balance()) as Balance).balance, 70);
    assert.equal((await theirs.check(50)).allowed, true);
    const refused = await svc.check(50);
    assert.deepEqual([refused.allowed, refused.available], [false, left]);
    await assert.rejects(svc.accounts(), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.deepEqual([error.status, error.slug], [403, "insufficient-scope"]);
      return true;
    });

    // the accounts, paged, and one
    const first = await admin.accounts({ limit: 1 });
    assert.equal(first.data.length, 1);
    assert.equal(first.hasMore, true);
    const ids: string[] = [];
    for await (const account of admin.allAccounts(1)) ids.push(account["accountId"] as string);
    for (const id of [mine, other]) assert.ok(ids.includes(id), `${id} in ${ids}`);
    assert.deepEqual(ids, [...ids].sort());
    const one = await admin.account(mine);
    assert.deepEqual([one.accountId, one.name, one.balance, one.registered], [mine, "Mine", left, true]);

    // explain and balance as_of/by: what the API answers itself
    const key = await admin.createKey(mine);
    const customer = new CreditLedgerClient(baseUrl, { apiKey: key.secret });
    const asOf = encodeURIComponent(mid.toISOString());
    const explained = await customer.balanceExplain({ as_of: mid.toISOString(), by: "occurred" });
    assert.deepEqual(
      explained,
      await raw(baseUrl, `/v1/credits/balance/explain?as_of=${asOf}&by=occurred`, key.secret),
    );
    assert.equal((await customer.balanceExplain()).balance, left);
    const then = await customer.balance({ as_of: mid.toISOString(), by: "recorded" });
    assert.deepEqual(
      then,
      await raw(baseUrl, `/v1/credits/balance?as_of=${asOf}&by=recorded`, key.secret),
    );
    assert.equal((then as Balance).balance, 20);

    // the account reads
    const settings = await svc.accountSettings();
    assert.deepEqual([settings.accountId, settings.lowBalanceThreshold], [mine, 25]);
    const alerts = await customer.alerts({ days: 2, limit: 1 });
    assert.deepEqual(
      alerts.alerts.map((a) => [a.type, a.data["available"]]),
      [["low_balance", left]],
    );
    const daily = await customer.dailyBalance({ days: 3 });
    assert.equal(daily.days.length, 3);
    assert.equal(daily.days.at(-1)?.balance, left);

    // the alert reached the receiver: its delivery is listed; then the endpoint is deleted
    const delivered = await until("the low-balance alert delivered", async () => {
      const page = await admin.webhookDeliveries(hook.id, { limit: 5 });
      return page.data.find((d) => d.status === "delivered");
    });
    assert.deepEqual([delivered.eventType, delivered.accountId], ["low_balance", mine]);
    await admin.deleteWebhook(hook.id);
    assert.ok(!(await admin.webhooks()).data.some((w) => w.id === hook.id));

    // a dashboard sign-in link, traded once for a key of the account
    const link = await admin.dashboardSession(other);
    const sessionToken = link.url.split("#session=")[1];
    assert.ok(sessionToken, link.url);
    const page = new CreditLedgerClient(baseUrl);
    const traded = await page.exchangeDashboardSession(sessionToken);
    assert.equal(traded.accountId, other);
    await assert.rejects(page.exchangeDashboardSession(sessionToken), ProblemError);
    const dashboard = new CreditLedgerClient(baseUrl, { apiKey: traded.secret });
    assert.equal(((await dashboard.balance()) as Balance).balance, 70);

    await admin.revokeAdminToken(token.tokenId);
    await assert.rejects(theirs.balance(), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 403);
      return true;
    });
  });
});
