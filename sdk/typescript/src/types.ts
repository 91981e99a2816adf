/**
 * Types of every call, taken from the generated `openapi.ts` (`npm run generate`) where the
 * OpenAPI document is specific, and from the contract's shapes below where it is not yet (an
 * untyped object, or an endpoint the document does not have): regenerating after the document
 * gains a schema makes the generated type win, with no change here.
 */
import type { paths } from "./openapi.js";

export type HttpMethod = "get" | "post" | "put" | "delete";
type Json = Record<string, unknown>;

type Operation<P extends string, M extends HttpMethod> = P extends keyof paths
  ? M extends keyof paths[P]
    ? NonNullable<paths[P][M]>
    : never
  : never;

type JsonContent<R> = R extends { content: { "application/json": infer B } } ? B : never;
type SuccessOf<O> = O extends { responses: infer R }
  ? R extends { 200: infer A }
    ? JsonContent<A>
    : R extends { 201: infer A }
      ? JsonContent<A>
      : R extends { 202: infer A }
        ? JsonContent<A>
        : never
  : never;

/** G when it says something (not never, unknown, or an open `{[key: string]: unknown}`), else F. */
export type Specific<G, F> = [G] extends [never]
  ? F
  : unknown extends G
    ? F
    : string extends keyof G
      ? F
      : G;

/** The 2xx JSON answer of `M P`. */
export type AnswerOf<P extends string, M extends HttpMethod, F> = Specific<
  SuccessOf<Operation<P, M>>,
  F
>;
/** The query parameters of `M P` (their wire names, as the reference docs use). */
export type QueryOf<P extends string, M extends HttpMethod, F> = Specific<
  Operation<P, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never,
  F
>;
/** The JSON body of `M P`. */
export type BodyOf<P extends string, M extends HttpMethod, F> = Specific<
  Operation<P, M> extends { requestBody?: infer B } ? JsonContent<NonNullable<B>> : never,
  F
>;

// --- the contract's shapes (used while the document leaves an answer untyped) ---------------

export interface Bucket {
  kind: string;
  amount: number;
  balance: number;
}

export interface Balance {
  accountId: string;
  balance: number;
  reserved: number;
  available: number;
  scheduled: number;
  overage: number;
  grantedTotal: number;
  consumedTotal: number;
  buckets: Bucket[];
  resetAt: string | null;
  lastUpdated: string | null;
  ledgerSeq?: number;
}

export interface CheckAnswer {
  /** false is the API's 402 (the problem's `available`, … kept): an answer, not an error */
  allowed: boolean;
  available: number;
  cost?: number;
  endpoint?: string | null;
  owed?: number;
  ledgerSeq?: number;
  /** why not (a refusal only) */
  detail?: string;
}

export interface LedgerEntry {
  id: string;
  account_id: string;
  seq: number;
  delta: number;
  balance_after: number;
  reason: string;
  source: string;
  bucket: { grant_id: string; kind: string } | null;
  metadata: Json;
  occurred_at: string;
  recorded_at: string;
  [more: string]: unknown;
}

export interface LedgerPage {
  data: LedgerEntry[];
  page: number;
  limit: number;
  hasMore: boolean;
  nextCursor: string | null;
  ledgerSeq?: number;
}

export interface ActivityAnswer {
  from: string;
  to: string;
  days: { day: string; scans: number; credits: number; refunds: number }[];
}

export interface GrantsPage {
  data: Json[];
  limit: number;
  nextPage: string | null;
}

export interface UsageAnswer {
  groupBy: string;
  rows: {
    key: string;
    requests: number;
    successfulRequests: number;
    failedRequests: number;
    credits: number;
  }[];
  hasMore: boolean;
}

export interface BalanceExplanation {
  accountId: string;
  balance: number;
  overage: number;
  grants: {
    grantId: string;
    kind: string;
    granted: number;
    consumed: number;
    refunded: number;
    expired: number;
    voided: number;
    remaining: number;
    drawOrder: number;
    why: string;
  }[];
  unbucketed: number;
  recentConsumes: {
    requestId: string;
    credits: number;
    draws: { grantId: string; amount: number }[];
    owed: number;
  }[];
}

export interface Accepted {
  commandId: string;
}

export interface CommandStatus {
  commandId: string;
  accountId: string | null;
  status: "pending" | "applied" | "rejected";
  reason: string | null;
}

export interface NewKey {
  keyId: string;
  secret: string;
  expiresAt: string | null;
}

export interface NewAdminToken {
  tokenId: string;
  name: string;
  /** shown in this answer only */
  secret: string;
  scopes: string[];
  createdAt: string | null;
}

export interface AccountsPage {
  data: Json[];
  limit: number;
  hasMore: boolean;
  nextPage: string | null;
}

export interface AccountsQuery {
  limit?: number;
  next_page?: string;
}

export interface NewWebhook {
  id: string;
  secret: string;
  [more: string]: unknown;
}

export interface DashboardSession {
  url: string;
  expiresAt: string;
}

export type Instant = string | Date;

// Query shapes for endpoints the document does not have yet.
export interface AsOfQuery {
  as_of?: string;
  by?: "occurred" | "recorded";
  min_seq?: number;
}
export interface PageQuery {
  limit?: number;
  cursor?: string;
}

export interface GrantBody {
  amount: number;
  name?: string;
  bucket?: "subscription" | "purchased" | "gift" | "promotional";
  priority?: number | null;
  source?: string;
  metadata?: Record<string, string>;
  effective_at?: string | null;
  expires_at?: string | null;
  applies_to?: string[] | null;
  occurred_at?: string;
}

export interface WebhookBody {
  url: string;
  events?: string[];
  description?: string;
}

export type AnyJson = Json;
