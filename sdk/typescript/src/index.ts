export { CreditLedgerClient } from "./client.js";
export type { ClientOptions, RetryOptions } from "./client.js";
export { ClientConfigError, ProblemError } from "./errors.js";
export type * from "./types.js";
export type { components, operations, paths } from "./openapi.js";
