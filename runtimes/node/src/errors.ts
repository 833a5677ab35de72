/**
 * Typed call errors: the closed set of error types that cross the wire (docs/wire-protocol.md, "Errors").
 *
 * A handler throws one of these on purpose; `type` is the name carried in the answer payload
 * `{"type", "message", "details"}`. Anything else a handler throws becomes a `SystemError` whose message
 * never reaches the caller.
 */

export type ErrorType =
  | "ValidationError"
  | "BusinessLogicError"
  | "SystemError"
  | "TimeoutError"
  | "Unauthenticated"
  | "Forbidden"
  | "NotFound"
  | "Unavailable"
  | "Conflict"
  | "Throttled";

export interface ErrorPayload {
  type: ErrorType | string;
  message: string;
  details: unknown;
}

/** Base of every typed call error. */
export class DormantError extends Error {
  readonly type: ErrorType = "SystemError";
  readonly details: unknown;

  constructor(message: string, details?: unknown) {
    super(message);
    this.details = details === undefined ? null : details;
  }

  /** The wire form of this error. */
  toPayload(): ErrorPayload {
    return { type: this.type, message: this.message, details: this.details };
  }
}

/** The input (or a handler's output) does not match the function's schema, or the request is malformed. */
export class ValidationError extends DormantError {
  override readonly type = "ValidationError";
}

/** A domain rule was violated; thrown on purpose by handler code. */
export class BusinessLogicError extends DormantError {
  override readonly type = "BusinessLogicError";
}

/** An infrastructure failure or an unexpected exception in a handler. */
export class SystemError extends DormantError {
  override readonly type = "SystemError";
}

/** The call ran past its deadline or its function's timeout (wire type `TimeoutError`). */
export class DeadlineExceeded extends DormantError {
  override readonly type = "TimeoutError";
}

/** The call carried no valid identity where one is required. */
export class Unauthenticated extends DormantError {
  override readonly type = "Unauthenticated";
}

/** The caller's identity may not make this call. */
export class Forbidden extends DormantError {
  override readonly type = "Forbidden";
}

/** No such service, version or function (or a domain object the handler could not find). */
export class NotFound extends DormantError {
  override readonly type = "NotFound";
}

/** Nothing is serving the target right now, or a dependency cannot be reached. */
export class Unavailable extends DormantError {
  override readonly type = "Unavailable";
}

/** The callId was used before for a call with another input. */
export class Conflict extends DormantError {
  override readonly type = "Conflict";
}

/** The function is at its concurrency limit; the call did not run. */
export class Throttled extends DormantError {
  override readonly type = "Throttled";
}

export { DeadlineExceeded as TimeoutError };
