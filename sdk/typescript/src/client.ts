/**
 * `CreditLedgerClient`: one typed method per customer read and admin endpoint of the
 * creditledger HTTP API, over Node's global fetch.
 *
 * - `creditsRemaining` follows every answer's `X-Credits-Remaining` (errors included).
 * - 429 is retried after `Retry-After`; 5xx and network errors with exponential backoff and
 *   full jitter, at most `maxAttempts` tries. A call that could do something twice (creating a
 *   key, a price-book version) is retried only when it surely did not arrive (refused
 *   connection) or was refused unprocessed (429). Admin commands carry an `Idempotency-Key`
 *   (yours, else one generated per call and kept across its retries): the API applies it once.
 * - Any other non-2xx answer throws a `ProblemError` with the problem+json fields.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import { ClientConfigError, ProblemError } from "./errors.js";
import type * as T from "./types.js";

type Auth = "customer" | "admin" | "ingest" | "none";
type QueryValue = string | number | boolean | Date | null | undefined | readonly string[];

export interface RetryOptions {
  /** tries per call, the first included (default 4) */
  maxAttempts?: number;
  /** backoff before the 2nd try; doubled each time (default 200 ms) */
  baseDelayMs?: number;
  /** backoff cap (default 10 s) */
  maxDelayMs?: number;
  /** a longer Retry-After is not waited for: the 429 is thrown (default 60 s) */
  maxRetryAfterMs?: number;
}

export interface ClientOptions {
  /** a customer API key: customer reads of its account */
  apiKey?: string;
  /** an admin token: admin calls; with `account` also customer reads (a credits:read token) */
  adminToken?: string;
  /** the account a service token reads (sent as `Creditledger-Account`) */
  account?: string;
  /** the ingest token for `sendEvents` (else the admin token) */
  ingestToken?: string;
  /** per try (default 10 s) */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** defaults to the global fetch */
  fetch?: typeof fetch;
}

interface Call {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  auth: Auth;
  query?: object | undefined;
  body?: unknown;
  headers?: Record<string, string>;
  /** doing it twice does no more than once */
  retrySafe?: boolean;
  /** non-2xx statuses that are answers, not errors */
  okStatuses?: readonly number[];
}

const RETRY_STATUSES = new Set([500, 502, 503, 504]);
// Errors raised before the request left: retrying them never does a thing twice.
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);

function seg(value: string): string {
  return encodeURIComponent(value);
}

function wireValue(value: Exclude<QueryValue, null | undefined>): string {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.join(",");
  return String(value);
}

function instant(value: T.Instant): string {
  return value instanceof Date ? value.toISOString() : value;
}

function errorCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

export class CreditLedgerClient {
  /** available credits as the last `X-Credits-Remaining` said (undefined: none seen yet) */
  creditsRemaining: number | undefined;
  /** the account's ledger seq the last read reflected (`X-Ledger-Seq`) */
  ledgerSeq: number | undefined;
  readonly baseUrl: string;
  private readonly options: ClientOptions;
  private readonly retry: Required<RetryOptions>;
  private readonly fetcher: typeof fetch;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.options = options;
    this.retry = {
      maxAttempts: options.retry?.maxAttempts ?? 4,
      baseDelayMs: options.retry?.baseDelayMs ?? 200,
      maxDelayMs: options.retry?.maxDelayMs ?? 10_000,
      maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 60_000,
    };
    this.fetcher = options.fetch ?? globalThis.fetch;
  }

  /**
   * The same client reading another account: for a service token (an admin token with
   * `credits:read`), customer reads name `account` in `Creditledger-Account`.
   */
  forAccount(account: string): CreditLedgerClient {
    return new CreditLedgerClient(this.baseUrl, { ...this.options, account });
  }

  // --- customer reads ---------------------------------------------------------------------

  /** Spendable credit now; with `as_of` (and `by`), as it stood then. */
  balance(
    query?: T.QueryOf<"/v1/credits/balance", "get", T.AsOfQuery> & T.AsOfQuery,
  ): Promise<T.AnswerOf<"/v1/credits/balance", "get", T.Balance>> {
    return this.send({ method: "GET", path: "/v1/credits/balance", auth: "customer", query });
  }

  /** The balance at the end of each of the last `days` UTC days, by event time. */
  dailyBalance(
    query?: T.QueryOf<"/v1/credits/balance/daily", "get", { days?: number }>,
  ): Promise<T.AnswerOf<"/v1/credits/balance/daily", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/credits/balance/daily", auth: "customer", query });
  }

  /** Alert thresholds, auto-reload and credit limit, as the writer applies them. */
  accountSettings(): Promise<T.AnswerOf<"/v1/account/settings", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/account/settings", auth: "customer" });
  }

  /** Recent alerts (low balance, depleted, overage, …), newest first. */
  alerts(
    query?: T.QueryOf<"/v1/account/alerts", "get", { days?: number; limit?: number }>,
  ): Promise<T.AnswerOf<"/v1/account/alerts", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/account/alerts", auth: "customer", query });
  }

  /** Why the balance is what it is: each grant's part, the recent consumes' draws. */
  balanceExplain(
    query?: T.QueryOf<"/v1/credits/balance/explain", "get", T.AsOfQuery>,
  ): Promise<T.AnswerOf<"/v1/credits/balance/explain", "get", T.BalanceExplanation>> {
    return this.send({
      method: "GET",
      path: "/v1/credits/balance/explain",
      auth: "customer",
      query,
    });
  }

  /**
   * Whether a call of `cost` credits on `endpoint` is covered now; a 402 answers allowed false
   * (the problem's members kept: `available`, `cost`, `owed`, `detail`, …).
   */
  async check(
    cost: number,
    endpoint?: string,
    options: { min_seq?: number } = {},
  ): Promise<T.CheckAnswer> {
    const answer = await this.send<Record<string, unknown>>({
      method: "GET",
      path: "/v1/credits/check",
      auth: "customer",
      query: { cost, endpoint, min_seq: options.min_seq },
      okStatuses: [402],
    });
    const { type, title, status: _status, instance: _instance, ...members } = answer;
    const allowed = type === undefined && title === undefined && answer["allowed"] !== false;
    return { ...members, allowed, available: answer["available"] as number } as T.CheckAnswer;
  }

  activity(
    query?: T.QueryOf<"/v1/credits/activity", "get", { from?: string; to?: string }>,
  ): Promise<T.AnswerOf<"/v1/credits/activity", "get", T.ActivityAnswer>> {
    return this.send({ method: "GET", path: "/v1/credits/activity", auth: "customer", query });
  }

  /** One page of entries, newest first; follow `nextCursor` (or use `ledgerEntries`). */
  ledger(
    query?: T.QueryOf<"/v1/credits/ledger", "get", Record<string, QueryValue>>,
  ): Promise<T.AnswerOf<"/v1/credits/ledger", "get", T.LedgerPage>> {
    return this.send({ method: "GET", path: "/v1/credits/ledger", auth: "customer", query });
  }

  /** Every entry matching `query`, page after page by cursor. */
  async *ledgerEntries(
    query?: T.QueryOf<"/v1/credits/ledger", "get", Record<string, QueryValue>>,
  ): AsyncGenerator<T.LedgerEntry> {
    const { page: _page, offset: _offset, cursor: _cursor, ...filters } = (query ?? {}) as Record<
      string,
      QueryValue
    >;
    let cursor: string | null | undefined;
    do {
      const page = (await this.ledger({ ...filters, ...(cursor ? { cursor } : {}) } as never)) as
        unknown as T.LedgerPage;
      yield* page.data;
      cursor = page.nextCursor;
    } while (cursor);
  }

  ledgerEntry(
    entryId: string,
  ): Promise<T.AnswerOf<"/v1/credits/ledger/{entry_id}", "get", T.LedgerEntry>> {
    return this.send({ method: "GET", path: `/v1/credits/ledger/${seg(entryId)}`, auth: "customer" });
  }

  grants(
    query?: T.QueryOf<"/v1/credits/grants", "get", Record<string, QueryValue>>,
  ): Promise<T.AnswerOf<"/v1/credits/grants", "get", T.GrantsPage>> {
    return this.send({ method: "GET", path: "/v1/credits/grants", auth: "customer", query });
  }

  getGrant(
    grantId: string,
    query?: T.QueryOf<"/v1/credits/grants/{grant_id}", "get", Record<string, QueryValue>>,
  ): Promise<T.AnswerOf<"/v1/credits/grants/{grant_id}", "get", T.AnyJson>> {
    return this.send({
      method: "GET",
      path: `/v1/credits/grants/${seg(grantId)}`,
      auth: "customer",
      query,
    });
  }

  usage(
    query?: T.QueryOf<"/v1/usage", "get", Record<string, QueryValue>>,
  ): Promise<T.AnswerOf<"/v1/usage", "get", T.UsageAnswer>> {
    return this.send({ method: "GET", path: "/v1/usage", auth: "customer", query });
  }

  summary(
    query?: T.QueryOf<"/v1/account/summary", "get", { period?: string }>,
  ): Promise<T.AnswerOf<"/v1/account/summary", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/account/summary", auth: "customer", query });
  }

  // --- admin: accounts and keys -----------------------------------------------------------

  createAccount(
    body: T.BodyOf<"/v1/admin/accounts", "post", { account_id: string; name: string }>,
  ): Promise<T.AnswerOf<"/v1/admin/accounts", "post", T.AnyJson>> {
    // an existing account with the same name answers 200: safe to retry
    return this.send({ method: "POST", path: "/v1/admin/accounts", auth: "admin", body });
  }

  /** One page of accounts (name, balance, available, overage, last activity). */
  accounts(
    query?: T.QueryOf<"/v1/admin/accounts", "get", T.AccountsQuery>,
  ): Promise<T.AnswerOf<"/v1/admin/accounts", "get", T.AccountsPage>> {
    return this.send({
      method: "GET",
      path: "/v1/admin/accounts",
      auth: "admin",
      query,
    });
  }

  /** Every account, page after page by `nextPage`. */
  async *allAccounts(limit?: number): AsyncGenerator<T.AnyJson> {
    let nextPage: string | null | undefined;
    do {
      const query = { ...(limit ? { limit } : {}), ...(nextPage ? { next_page: nextPage } : {}) };
      const page = (await this.accounts(query as never)) as unknown as T.AccountsPage;
      yield* page.data;
      nextPage = page.nextPage;
    } while (nextPage);
  }

  account(
    accountId: string,
  ): Promise<T.AnswerOf<"/v1/admin/accounts/{account_id}", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: `/v1/admin/accounts/${seg(accountId)}`, auth: "admin" });
  }

  createKey(
    accountId: string,
    body?: T.BodyOf<"/v1/admin/accounts/{account_id}/keys", "post", { expires_at?: string }>,
  ): Promise<T.AnswerOf<"/v1/admin/accounts/{account_id}/keys", "post", T.NewKey>> {
    // not deduplicated by the API: not retried after a 5xx (it could make two keys)
    return this.send({
      method: "POST",
      path: `/v1/admin/accounts/${seg(accountId)}/keys`,
      auth: "admin",
      body: body ?? {},
      retrySafe: false,
    });
  }

  listKeys(
    accountId: string,
  ): Promise<T.AnswerOf<"/v1/admin/accounts/{account_id}/keys", "get", T.AnyJson>> {
    return this.send({
      method: "GET",
      path: `/v1/admin/accounts/${seg(accountId)}/keys`,
      auth: "admin",
    });
  }

  rotateKey(
    accountId: string,
    keyId: string,
    body?: { overlap_seconds?: number },
  ): Promise<T.AnswerOf<"/v1/admin/accounts/{account_id}/keys/{key_id}/rotate", "post", T.NewKey>> {
    return this.send({
      method: "POST",
      path: `/v1/admin/accounts/${seg(accountId)}/keys/${seg(keyId)}/rotate`,
      auth: "admin",
      body: body ?? {},
      retrySafe: false,
    });
  }

  async revokeKey(accountId: string, keyId: string): Promise<void> {
    await this.send({
      method: "DELETE",
      path: `/v1/admin/accounts/${seg(accountId)}/keys/${seg(keyId)}`,
      auth: "admin",
    });
  }

  /**
   * The dashboard page's trade of a sign-in link's token (the `session=` value of its fragment)
   * for a customer key of the account; no credential (the token is one), single-use.
   */
  exchangeDashboardSession(
    token: string,
  ): Promise<T.AnswerOf<"/dashboard/session-exchange", "post", T.AnyJson>> {
    return this.send({
      method: "POST",
      path: "/dashboard/session-exchange",
      auth: "none",
      body: { token },
      retrySafe: false,
    });
  }

  /** A short-lived sign-in link to the dashboard for that account. */
  dashboardSession(
    accountId: string,
  ): Promise<
    T.AnswerOf<"/v1/admin/accounts/{account_id}/dashboard-sessions", "post", T.DashboardSession>
  > {
    return this.send({
      method: "POST",
      path: `/v1/admin/accounts/${seg(accountId)}/dashboard-sessions`,
      auth: "admin",
      retrySafe: false,
    });
  }

  // --- admin: commands (202 {commandId}; their outcome: `command`, `waitForCommand`) ---------

  grant(
    accountId: string,
    body: T.BodyOf<"/v1/admin/accounts/{account_id}/grants", "post", T.GrantBody>,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, "grants", body, options);
  }

  adjust(
    accountId: string,
    body: T.BodyOf<
      "/v1/admin/accounts/{account_id}/adjustments",
      "post",
      { amount: number; reason?: string; allow_negative?: boolean }
    >,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, "adjustments", body, options);
  }

  refund(
    accountId: string,
    body: T.BodyOf<
      "/v1/admin/accounts/{account_id}/refunds",
      "post",
      { request_id: string; amount?: number; reason?: string }
    >,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, "refunds", body, options);
  }

  voidGrant(
    accountId: string,
    grantId: string,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, `grants/${seg(grantId)}/void`, {}, options);
  }

  hold(
    accountId: string,
    body: T.BodyOf<
      "/v1/admin/accounts/{account_id}/holds",
      "post",
      { hold_id: string; amount: number; expires_at: string }
    >,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, "holds", body, options);
  }

  capture(
    accountId: string,
    holdId: string,
    body: T.BodyOf<
      "/v1/admin/accounts/{account_id}/holds/{hold_id}/capture",
      "post",
      { request_id: string; endpoint: string; amount?: number }
    >,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, `holds/${seg(holdId)}/capture`, body, options);
  }

  release(
    accountId: string,
    holdId: string,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, `holds/${seg(holdId)}/release`, {}, options);
  }

  /** Only the fields given are sent: one left out keeps its value, null clears it. */
  settings(
    accountId: string,
    body: T.BodyOf<"/v1/admin/accounts/{account_id}/settings", "post", T.AnyJson>,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.command_(accountId, "settings", body, options);
  }

  command(
    commandId: string,
    query?: { account_id?: string },
  ): Promise<T.AnswerOf<"/v1/admin/commands/{command_id}", "get", T.CommandStatus>> {
    return this.send({
      method: "GET",
      path: `/v1/admin/commands/${seg(commandId)}`,
      auth: "admin",
      query,
    });
  }

  /** Polls `command` until applied or rejected; throws at the deadline. A 404 is "not yet". */
  async waitForCommand(
    commandId: string,
    options: { accountId?: string; timeoutMs?: number; pollMs?: number } = {},
  ): Promise<T.CommandStatus> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const status = await this.send<T.CommandStatus | Record<string, unknown>>({
        method: "GET",
        path: `/v1/admin/commands/${seg(commandId)}`,
        auth: "admin",
        query: { account_id: options.accountId },
        okStatuses: [404],
      });
      if (status["status"] === "applied" || status["status"] === "rejected") {
        return status as T.CommandStatus;
      }
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new Error(`command ${commandId} was not applied or rejected in time`);
      await sleep(Math.min(options.pollMs ?? 100, leftMs));
    }
  }

  // --- admin: price book, tokens, webhooks, ingest -------------------------------------------

  priceBook(): Promise<T.AnswerOf<"/v1/admin/price-book", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/admin/price-book", auth: "admin" });
  }

  /** Appends a version (not retried after a 5xx: it would append a second one). */
  setPriceBook(
    body: T.BodyOf<
      "/v1/admin/price-book",
      "put",
      { effective_at: string; prices: Record<string, number>; default_credits?: number }
    >,
  ): Promise<T.AnswerOf<"/v1/admin/price-book", "put", { version: number }>> {
    return this.send({
      method: "PUT",
      path: "/v1/admin/price-book",
      auth: "admin",
      body,
      retrySafe: false,
    });
  }

  createAdminToken(body: {
    name: string;
    scopes: string[];
  }): Promise<T.AnswerOf<"/v1/admin/tokens", "post", T.NewAdminToken>> {
    return this.send({
      method: "POST",
      path: "/v1/admin/tokens",
      auth: "admin",
      body,
      retrySafe: false,
    });
  }

  adminTokens(): Promise<T.AnswerOf<"/v1/admin/tokens", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/admin/tokens", auth: "admin" });
  }

  async revokeAdminToken(tokenId: string): Promise<void> {
    await this.send({ method: "DELETE", path: `/v1/admin/tokens/${seg(tokenId)}`, auth: "admin" });
  }

  /**
   * Registers an endpoint (`events` empty or absent: every alert type); the signing `secret` is
   * shown in this answer only. Not deduplicated by the API: not retried after a 5xx.
   */
  createWebhook(
    body: T.BodyOf<"/v1/admin/webhooks", "post", T.WebhookBody>,
  ): Promise<T.AnswerOf<"/v1/admin/webhooks", "post", T.NewWebhook>> {
    return this.send({
      method: "POST",
      path: "/v1/admin/webhooks",
      auth: "admin",
      body,
      retrySafe: false,
    });
  }

  webhooks(): Promise<T.AnswerOf<"/v1/admin/webhooks", "get", T.AnyJson>> {
    return this.send({ method: "GET", path: "/v1/admin/webhooks", auth: "admin" });
  }

  async deleteWebhook(webhookId: string): Promise<void> {
    await this.send({
      method: "DELETE",
      path: `/v1/admin/webhooks/${seg(webhookId)}`,
      auth: "admin",
    });
  }

  webhookDeliveries(
    webhookId: string,
    query?: T.QueryOf<"/v1/admin/webhooks/{webhook_id}/deliveries", "get", T.PageQuery>,
  ): Promise<T.AnswerOf<"/v1/admin/webhooks/{webhook_id}/deliveries", "get", T.AnyJson>> {
    return this.send({
      method: "GET",
      path: `/v1/admin/webhooks/${seg(webhookId)}/deliveries`,
      auth: "admin",
      query,
    });
  }

  /** HTTP ingest of usage events (idempotent by request_id, so retried safely). */
  sendEvents(
    events: Record<string, unknown>[],
  ): Promise<T.AnswerOf<"/v1/events", "post", { accepted: number }>> {
    return this.send({ method: "POST", path: "/v1/events", auth: "ingest", body: { events } });
  }

  // --- the core ------------------------------------------------------------------------------

  private command_(
    accountId: string,
    resource: string,
    body: unknown,
    options?: { idempotencyKey?: string },
  ): Promise<T.Accepted> {
    return this.send({
      method: "POST",
      path: `/v1/admin/accounts/${seg(accountId)}/${resource}`,
      auth: "admin",
      body,
      headers: { "Idempotency-Key": options?.idempotencyKey ?? randomUUID() },
    });
  }

  private authHeaders(auth: Auth): Record<string, string> {
    const { apiKey, adminToken, account, ingestToken } = this.options;
    if (auth === "none") return {};
    if (auth === "customer") {
      if (apiKey) return { Authorization: `Bearer ${apiKey}` };
      if (adminToken && account) {
        return { Authorization: `Bearer ${adminToken}`, "Creditledger-Account": account };
      }
      throw new ClientConfigError(
        "a customer read needs apiKey, or adminToken (scope credits:read) and account",
      );
    }
    const token = auth === "ingest" ? (ingestToken ?? adminToken) : adminToken;
    if (!token) throw new ClientConfigError(`this call needs an admin token (${auth})`);
    return { Authorization: `Bearer ${token}` };
  }

  private url(call: Call): string {
    const url = new URL(this.baseUrl + call.path);
    for (const [name, value] of Object.entries(call.query ?? {}) as [string, QueryValue][]) {
      if (value !== undefined && value !== null) url.searchParams.set(name, wireValue(value));
    }
    return url.toString();
  }

  private observe(response: Response): void {
    const remaining = Number.parseInt(response.headers.get("x-credits-remaining") ?? "", 10);
    if (Number.isFinite(remaining)) this.creditsRemaining = remaining;
    const seq = Number.parseInt(response.headers.get("x-ledger-seq") ?? "", 10);
    if (Number.isFinite(seq)) this.ledgerSeq = seq;
  }

  private backoffMs(attempt: number): number {
    const top = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return Math.random() * top;
  }

  /** Sends a call: retries as described at the top, then parses or throws a ProblemError. */
  async send<A>(call: Call): Promise<A> {
    const headers: Record<string, string> = {
      Accept: "application/json",
      "User-Agent": "creditledger-typescript/0.1",
      ...this.authHeaders(call.auth),
      ...(call.headers ?? {}),
    };
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const url = this.url(call);
    const retrySafe = call.retrySafe ?? true;
    for (let attempt = 1; ; attempt += 1) {
      const last = attempt >= this.retry.maxAttempts;
      let response: Response;
      try {
        response = await this.fetcher(url, {
          method: call.method,
          headers,
          body,
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
      } catch (error) {
        const notSent = NOT_SENT.has(errorCode(error) ?? "");
        if (last || !(retrySafe || notSent)) throw error;
        await sleep(this.backoffMs(attempt));
        continue;
      }
      this.observe(response);
      const text = await response.text();
      if (!last && response.status === 429) {
        const afterS = Number.parseFloat(response.headers.get("retry-after") ?? "");
        const waitMs = Number.isFinite(afterS) ? afterS * 1000 : this.backoffMs(attempt);
        if (waitMs <= this.retry.maxRetryAfterMs) {
          await sleep(waitMs);
          continue;
        }
      } else if (!last && retrySafe && RETRY_STATUSES.has(response.status)) {
        await sleep(this.backoffMs(attempt));
        continue;
      }
      if (response.ok || call.okStatuses?.includes(response.status)) {
        return (text ? JSON.parse(text) : undefined) as A;
      }
      throw ProblemError.fromAnswer(response.status, response.headers, text);
    }
  }
}

export { instant };
