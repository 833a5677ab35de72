/**
 * `@dormant/runtime`: what a Node handler class imports (decorators, `Context`, typed errors), and the
 * runtime that serves it (`node dist/main.js`). See docs/node.md.
 */

// Standard decorator metadata (TypeScript emits code that reads Symbol.metadata when it exists).
(Symbol as unknown as { metadata?: symbol }).metadata ??= Symbol.for("Symbol.metadata");

export { fn, service, type FunctionOptions, type ServiceOptions } from "./registry";
export { Context, ANONYMOUS, type UserContext } from "./context";
export { Logger } from "./logger";
export type { Authorizer, DataStore, JsonObject, Messaging, Platform, QueryOptions, QueryResult } from "./platform";
export {
  BusinessLogicError,
  Conflict,
  DeadlineExceeded,
  DormantError,
  Forbidden,
  NotFound,
  SystemError,
  Throttled,
  TimeoutError,
  Unauthenticated,
  Unavailable,
  ValidationError,
  type ErrorPayload,
  type ErrorType,
} from "./errors";
