/** Retries, backoff and idempotency keys, against a scripted local HTTP server. */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { CreditLedgerClient, ProblemError } from "../src/index.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  at: number;
}
type Reply = { status: number; body?: unknown; headers?: Record<string, string> };

let server: Server;
let baseUrl = "";
let script: Reply[] = [];
let seen: Seen[] = [];

function answers(...replies: Reply[]): void {
  script = replies;
  seen = [];
}

const problem = (status: number, slug: string): Reply => ({
  status,
  body: { type: `/problems/${slug}`, title: slug, status, detail: slug },
  headers: { "content-type": "application/problem+json" },
});

before(async () => {
  server = createServer((request, response) => {
    seen.push({ method: request.method ?? "", url: request.url ?? "", headers: request.headers, at: Date.now() });
    const reply = (script.length > 1 ? script.shift() : script[0]) ?? { status: 500 };
    response.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
    response.end(reply.body === undefined ? "" : JSON.stringify(reply.body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
});

const fast = { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 5 };

describe("retries", () => {
  it("retries 5xx with backoff, then answers; creditsRemaining follows every answer", async () => {
    answers(
      { ...problem(503, "unavailable"), headers: { "x-credits-remaining": "5" } },
      problem(502, "bad-gateway"),
      { status: 200, body: { balance: 9, available: 8 }, headers: { "x-credits-remaining": "8" } },
    );
    const client = new CreditLedgerClient(baseUrl, { apiKey: "k", retry: fast });
    const balance = await client.balance();
    assert.equal(balance.available, 8);
    assert.equal(client.creditsRemaining, 8);
    assert.equal(seen.length, 3);
    assert.equal(seen[0]?.headers["authorization"], "Bearer k");
  });

  it("gives up after maxAttempts with the last problem", async () => {
    answers(problem(503, "unavailable"));
    const client = new CreditLedgerClient(baseUrl, { apiKey: "k", retry: { ...fast, maxAttempts: 3 } });
    await assert.rejects(client.balance(), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 503);
      assert.equal(error.slug, "unavailable");
      return true;
    });
    assert.equal(seen.length, 3);
  });

  it("waits Retry-After on 429", async () => {
    answers(
      { ...problem(429, "rate-limited"), headers: { "retry-after": "1" } },
      { status: 200, body: { allowed: true, available: 3 } },
    );
    const client = new CreditLedgerClient(baseUrl, { apiKey: "k", retry: fast });
    assert.deepEqual(await client.check(1), { allowed: true, available: 3 });
    assert.equal(seen.length, 2);
    const waitedMs = (seen[1]?.at ?? 0) - (seen[0]?.at ?? 0);
    assert.ok(waitedMs >= 900, `retried after ${waitedMs} ms, Retry-After said 1 s`);
  });

  it("keeps one Idempotency-Key across the retries of an admin command", async () => {
    answers(problem(503, "unavailable"), { status: 202, body: { commandId: "c1" } });
    const client = new CreditLedgerClient(baseUrl, { adminToken: "adm", retry: fast });
    assert.deepEqual(await client.grant("acct_1", { amount: 5 }), { commandId: "c1" });
    assert.equal(seen.length, 2);
    const keys = new Set(seen.map((s) => s.headers["idempotency-key"]));
    assert.equal(keys.size, 1);
    assert.equal(seen[0]?.url, "/v1/admin/accounts/acct_1/grants");
    answers({ status: 202, body: { commandId: "c2" } });
    await client.adjust("acct_1", { amount: -1, reason: "x" }, { idempotencyKey: "mine" });
    assert.equal(seen[0]?.headers["idempotency-key"], "mine");
  });

  it("does not retry after a 5xx what the API would do twice", async () => {
    answers(problem(500, "internal-error"), { status: 201, body: { keyId: "k" } });
    const client = new CreditLedgerClient(baseUrl, { adminToken: "adm", retry: fast });
    await assert.rejects(client.createKey("acct_1"), ProblemError);
    assert.equal(seen.length, 1);
  });

  it("sends a service token with the account it reads", async () => {
    answers({ status: 200, body: { balance: 1 } });
    const client = new CreditLedgerClient(baseUrl, { adminToken: "svc", account: "acct_7" });
    await client.balance({ as_of: "2026-01-01T00:00:00Z", by: "occurred" });
    assert.equal(seen[0]?.headers["authorization"], "Bearer svc");
    assert.equal(seen[0]?.headers["creditledger-account"], "acct_7");
    assert.equal(seen[0]?.url, "/v1/credits/balance?as_of=2026-01-01T00%3A00%3A00Z&by=occurred");
  });

  it("a 402 check is an answer", async () => {
    answers({ ...problem(402, "insufficient-credits"), body: { ...(problem(402, "insufficient-credits").body as object), available: 2 }, headers: { "x-credits-remaining": "2" } });
    const client = new CreditLedgerClient(baseUrl, { apiKey: "k", retry: fast });
    const answer = await client.check(5);
    assert.equal(answer.allowed, false);
    assert.equal(answer.available, 2);
    assert.equal(client.creditsRemaining, 2);
  });
});
