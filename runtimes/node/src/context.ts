/**
 * `Context`: what a handler gets besides its input, one per call.
 */

import { Logger } from "./logger";
import { type Authorizer, type DataStore, type Messaging, runtimePlatform } from "./platform";

/** The verified caller of a call (anonymous: no token, or authentication off). */
export interface UserContext {
  readonly userId: string | null;
  readonly email: string | null;
  readonly roles: readonly string[];
  readonly groups: readonly string[];
  readonly anonymous: boolean;
}

export const ANONYMOUS: UserContext = Object.freeze({
  userId: null,
  email: null,
  roles: Object.freeze([]) as readonly string[],
  groups: Object.freeze([]) as readonly string[],
  anonymous: true,
});

export interface ContextFields {
  callId: string;
  service: string;
  version: number | null;
  function: string;
  headers: Readonly<Record<string, string>>;
  deadline: number;
  user: UserContext;
  config: Readonly<Record<string, unknown>>;
  logger: Logger;
  signal: AbortSignal;
}

export class Context {
  /** The call's id as text (Correlation Data's text form, or the envelope's `callId`). */
  readonly callId: string;
  readonly service: string;
  readonly version: number | null;
  /** The function called (its wire name). */
  readonly function: string;
  /** Request headers (MQTT user properties or envelope headers; the bearer token is taken out). */
  readonly headers: Readonly<Record<string, string>>;
  /** When the call must be answered by: epoch milliseconds (the function's timeout included). */
  readonly deadline: number;
  /** The caller, verified from its bearer token before the handler runs. */
  readonly user: UserContext;
  /** The service's live configuration (`mesh/config/{svc}`), read-only; `{}` when none is set. */
  readonly config: Readonly<Record<string, unknown>>;
  /** JSON-lines logger whose lines carry this call's id as `requestId`. */
  readonly logger: Logger;
  /** Aborted when the call's deadline or timeout passes: hand it to fetch() and other cancellable work. */
  readonly signal: AbortSignal;

  /** The DataStore, as this call's caller, in this call's transaction (see platform.ts). */
  get data(): DataStore {
    return runtimePlatform.interfaces.data;
  }

  /** The Authorizer, as this call's caller, in this call's transaction. */
  get authorizer(): Authorizer {
    return runtimePlatform.interfaces.authorizer;
  }

  /** Events sent on behalf of this call's caller. */
  get messaging(): Messaging {
    return runtimePlatform.interfaces.messaging;
  }

  constructor(fields: ContextFields) {
    this.callId = fields.callId;
    this.service = fields.service;
    this.version = fields.version;
    this.function = fields.function;
    this.headers = fields.headers;
    this.deadline = fields.deadline;
    this.user = fields.user;
    this.config = fields.config;
    this.logger = fields.logger;
    this.signal = fields.signal;
  }

  /** Milliseconds left before the deadline (0 once it passed). */
  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }
}
