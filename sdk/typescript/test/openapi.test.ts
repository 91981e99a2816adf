/**
 * Every method's request against the API's own OpenAPI document (schemas/json/openapi.json):
 * the method and path exist, the query parameters and body fields are declared (the API answers
 * 400 to an unknown query parameter), required body fields are sent, an Idempotency-Key goes
 * only where declared, the credential is the operation's, and every operation has a method.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";

import { CreditLedgerClient } from "../src/index.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON document walked by key
type Json = Record<string, any>;
interface Sent {
  method: string;
  url: URL;
  headers: Headers;
  body: Json | undefined;
}

const document = JSON.parse(
  readFileSync(new URL("../../../../schemas/json/openapi.json", import.meta.url), "utf8"),
) as Json;
// Operations the SDK leaves out, and why.
const NOT_SDK_CALLS: Record<string, string> = {
  voidGrant: "the older form of voidGrantById (grant id in the body); voidGrant uses the path",
};
const T0 = "2026-01-01T00:00:00Z";
const A = "acct_1";

const CALLS: [string, (c: CreditLedgerClient) => Promise<unknown>][] = [
  ["balance", (c) => c.balance({ as_of: T0, by: "occurred", min_seq: 1 })],
  ["balanceExplain", (c) => c.balanceExplain({ as_of: T0, by: "recorded", min_seq: 1 })],
  ["dailyBalance", (c) => c.dailyBalance({ days: 3 })],
  ["accountSettings", (c) => c.accountSettings()],
  ["alerts", (c) => c.alerts({ days: 3, limit: 5 })],
  ["check", (c) => c.check(5, "POST /scan", { min_seq: 1 })],
  ["activity", (c) => c.activity({ from: T0, to: T0, min_seq: 1 })],
  ["ledger", (c) => c.ledger({ from: T0, to: T0, reason: "grant", limit: 2, cursor: "c", expand: "bucket", min_seq: 1 })],
  ["ledgerEntry", (c) => c.ledgerEntry("e1")],
  ["grants", (c) => c.grants({ covering_date: T0, include_balance: true, limit: 2, next_page: "p", min_seq: 1 })],
  ["getGrant", (c) => c.getGrant("g1", { include_ledgers: true, include_balance: true, min_seq: 1 })],
  ["usage", (c) => c.usage({ group_by: "day", from: T0, to: T0, min_seq: 1 })],
  ["summary", (c) => c.summary({ period: "daily", min_seq: 1 })],
  ["createAccount", (c) => c.createAccount({ account_id: A, name: "A" })],
  ["accounts", (c) => c.accounts({ limit: 1, next_page: "p" })],
  ["account", (c) => c.account(A)],
  ["createKey", (c) => c.createKey(A, { expires_at: T0 })],
  ["listKeys", (c) => c.listKeys(A)],
  ["rotateKey", (c) => c.rotateKey(A, "k1", { overlap_seconds: 60 })],
  ["revokeKey", (c) => c.revokeKey(A, "k1")],
  ["exchangeDashboardSession", (c) => c.exchangeDashboardSession("cl_dsl_x")],
  ["dashboardSession", (c) => c.dashboardSession(A)],
  ["grant", (c) => c.grant(A, { amount: 5, name: "n", bucket: "gift", expires_at: T0 })],
  ["adjust", (c) => c.adjust(A, { amount: -1, reason: "r", allow_negative: true })],
  ["refund", (c) => c.refund(A, { request_id: "r1", amount: 1, reason: "r" })],
  ["voidGrantById", (c) => c.voidGrant(A, "g1")],
  ["hold", (c) => c.hold(A, { hold_id: "h1", amount: 2, expires_at: T0 })],
  ["capture", (c) => c.capture(A, "h1", { request_id: "r1", endpoint: "POST /scan", amount: 1 })],
  ["release", (c) => c.release(A, "h1")],
  ["settings", (c) => c.settings(A, { low_balance_threshold: 1, credit_limit: null, grant_expiring_notice_s: 60 })],
  ["command", (c) => c.command("c1", { account_id: A })],
  ["waitForCommand", (c) => c.waitForCommand("c1", { accountId: A })],
  ["priceBook", (c) => c.priceBook()],
  ["setPriceBook", (c) => c.setPriceBook({ effective_at: T0, prices: { "POST /scan": 2 }, default_credits: 1 })],
  ["createAdminToken", (c) => c.createAdminToken({ name: "t", scopes: ["credits:read"] })],
  ["adminTokens", (c) => c.adminTokens()],
  ["revokeAdminToken", (c) => c.revokeAdminToken("t1")],
  ["createWebhook", (c) => c.createWebhook({ url: "https://x.example/h", events: ["low_balance"], description: "d" })],
  ["webhooks", (c) => c.webhooks()],
  ["deleteWebhook", (c) => c.deleteWebhook("we_1")],
  ["webhookDeliveries", (c) => c.webhookDeliveries("we_1", { limit: 2, cursor: "c" })],
  ["sendEvents", (c) => c.sendEvents([{ request_id: "r1" }])],
];

function recording(): { client: CreditLedgerClient; sent: Sent[] } {
  const sent: Sent[] = [];
  const fake = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const text = typeof init?.body === "string" ? init.body : undefined;
    sent.push({
      method: init?.method ?? "GET",
      url: new URL(String(input)),
      headers: new Headers(init?.headers),
      body: text === undefined ? undefined : (JSON.parse(text) as Json),
    });
    const answer = { data: [], status: "applied", allowed: true, available: 1 };
    return new Response(JSON.stringify(answer), { headers: { "content-type": "application/json" } });
  };
  const options = { adminToken: "adm", account: A, fetch: fake as typeof fetch };
  return { client: new CreditLedgerClient("http://ledger.test", options), sent };
}

function resolve(schema: Json): Json {
  const ref = schema["$ref"] as string | undefined;
  return ref ? resolve(document["components"]["schemas"][ref.split("/").pop()!]) : schema;
}

function operationOf(request: Sent): Json {
  const matches: [number, string][] = [];
  for (const [template, operations] of Object.entries(document["paths"] as Json)) {
    const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`);
    if (pattern.test(request.url.pathname) && request.method.toLowerCase() in operations) {
      matches.push([(template.match(/\{/g) ?? []).length, template]);
    }
  }
  matches.sort((a, b) => a[0] - b[0]);
  const template = matches[0]?.[1];
  assert.ok(template, `${request.method} ${request.url.pathname} is not in the document`);
  return document["paths"][template][request.method.toLowerCase()] as Json;
}

function checkBody(name: string, operation: Json, body: Json): void {
  let schema = resolve(operation["requestBody"]["content"]["application/json"]["schema"]);
  for (const variant of (schema["oneOf"] ?? []) as Json[]) {
    if (Object.keys(body).every((k) => k in (resolve(variant)["properties"] ?? {}))) {
      schema = resolve(variant);
    }
  }
  const fields = Object.keys(schema["properties"] ?? {});
  for (const key of Object.keys(body)) assert.ok(fields.includes(key), `${name}: body ${key}`);
  for (const key of (schema["required"] ?? []) as string[]) assert.ok(key in body, `${name}: ${key}`);
}

it("every request is what the OpenAPI document declares, and every operation has a method", async () => {
  const covered = new Set<string>();
  for (const [name, call] of CALLS) {
    const { client, sent } = recording();
    await call(client);
    assert.equal(sent.length, 1, name);
    const request = sent[0]!;
    const operation = operationOf(request);
    covered.add(operation["operationId"] as string);
    const declared = (operation["parameters"] ?? []) as Json[];
    const queries = declared.filter((p) => p["in"] === "query").map((p) => p["name"] as string);
    for (const key of request.url.searchParams.keys()) {
      assert.ok(queries.includes(key), `${name}: query ${key} is not declared`);
    }
    const headers = declared.filter((p) => p["in"] === "header").map((p) => p["name"] as string);
    if (request.headers.has("idempotency-key")) assert.ok(headers.includes("Idempotency-Key"), name);
    const security = ((operation["security"] ?? []) as Json[]).map((s) => Object.keys(s)[0]);
    if (security.includes("serviceToken")) {
      assert.equal(request.headers.get("creditledger-account"), A, name);
    } else if (security.length === 0) {
      assert.equal(request.headers.get("authorization"), null, name);
    }
    if (request.body !== undefined) checkBody(name, operation, request.body);
  }
  const operations = Object.entries(document["paths"] as Json)
    .filter(([path]) => path.startsWith("/v1/") || path === "/dashboard/session-exchange")
    .flatMap(([, ops]) => Object.values(ops as Json).map((op) => (op as Json)["operationId"]));
  const missing = operations.filter((id) => !covered.has(id) && !(id in NOT_SDK_CALLS));
  assert.deepEqual(missing, []);
});
