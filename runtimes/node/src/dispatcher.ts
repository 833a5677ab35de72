/**
 * Running one decoded call against the loaded service, in process: admission (authentication mode,
 * function lookup, roles), input validation, the handler under its timeout and the caller's deadline,
 * output to JSON and its schema check, and every failure mapped to a typed error (the same rules as
 * libs/python/dormant/_dispatch.py). Never throws: an unexpected handler exception is logged with the
 * callId and becomes a `SystemError` that says nothing of it.
 */

import { Context, type UserContext } from "./context";
import { DeadlineExceeded, DormantError, Forbidden, NotFound, SystemError, Unauthenticated, ValidationError } from "./errors";
import type { ErrorPayload } from "./errors";
import { type FunctionSpec, type ServiceSpec } from "./loader";
import { MemoryExceeded, type MemoryLimit } from "./limits";
import { Logger, log } from "./logger";
import { type CallTransaction, runtimePlatform } from "./platform";
import { type Checker, compileSchema } from "./validation";
import type { Call } from "./wire";

export interface Outcome {
  ok: boolean;
  /** The result, or the error payload; JSON text, as it goes on the wire and into the store. */
  body: string;
  errorType: string | null;
  /** The call's DataStore transaction when the handler opened one (the server commits or rolls it back). */
  tx: CallTransaction | null;
}

interface Compiled {
  spec: FunctionSpec;
  input: Checker;
  output: Checker;
}

const handlerLog = new Logger("dormant.handler");

export class Dispatcher {
  readonly functions = new Map<string, Compiled>();
  /** The live configuration handed to each call (replaced whole when a new revision arrives). */
  config: Readonly<Record<string, unknown>> = Object.freeze({});
  /** The function's memory limit (limits.ts), or null: none. */
  memory: MemoryLimit | null = null;
  /** Set once a call went past the memory limit: the process must end after answering it. */
  outOfMemory = false;

  constructor(
    readonly service: ServiceSpec,
    readonly version: number | null,
  ) {
    for (const [name, spec] of service.functions) {
      this.functions.set(name, {
        spec,
        input: compileSchema(spec.input, `the input schema of ${name}`, true),
        output: compileSchema(spec.output, `the output schema of ${name}`),
      });
    }
  }

  /** Throw `Unauthenticated`, `NotFound` or `Forbidden` unless `user` may call `fn`. */
  admit(fn: string, user: UserContext): void {
    if (user.anonymous && this.service.auth === "required") {
      throw new Unauthenticated(`${this.service.name} needs a bearer token on every call`);
    }
    const compiled = this.functions.get(fn);
    if (compiled === undefined) {
      throw new NotFound(`${this.service.name} has no function '${fn}'`, {
        functions: [...this.functions.keys()].sort(),
      });
    }
    const needed = compiled.spec.roles;
    if (needed.length > 0 && !needed.some((role) => user.roles.includes(role))) {
      if (user.anonymous) throw new Unauthenticated(`${fn} needs a bearer token with one of its roles`);
      throw new Forbidden(`${fn} needs one of the roles ${needed.join(", ")}`, { roles: [...needed] });
    }
  }

  /** Run the call for `user`; the answer as JSON text. */
  async run(call: Call, user: UserContext): Promise<Outcome> {
    const opened: { tx: CallTransaction | null } = { tx: null };
    // The transaction the server must end; one the handler never opened is closed now, so a handler that
    // runs on past its answer cannot open it later (nothing would ever commit or roll it back).
    const used = (): CallTransaction | null => {
      const tx = opened.tx;
      if (tx === null) return null;
      if (tx.opened) return tx;
      tx.closed = true;
      return null;
    };
    try {
      const result = await this.runChecked(call, user, opened);
      if (this.memory?.check()) throw new MemoryExceeded("went past the memory limit");
      return { ok: true, body: result, errorType: null, tx: used() };
    } catch (exc) {
      if (exc instanceof MemoryExceeded || this.memory?.check()) {
        // Whatever the handler did, the process went past its limit during the call: the answer says so,
        // and the server ends the process once it is sent (the handler's writes are rolled back).
        this.outOfMemory = true;
        const limit = this.memory?.memoryMb ?? null;
        const failed = new SystemError(`${call.function} went past its memory limit of ${limit} MB`, {
          callId: call.callId,
          memoryLimitMb: limit,
          peakRssMb: this.memory?.peakRssMb ?? null,
        });
        return { ok: false, body: JSON.stringify(failed.toPayload()), errorType: failed.type, tx: used() };
      }
      if (exc instanceof DormantError) {
        return { ok: false, body: errorJson(exc.toPayload(), call.callId), errorType: exc.type, tx: used() };
      }
      const err = exc instanceof Error ? exc : new Error(String(exc));
      log.error(`[${call.callId}] ${this.service.name}.${call.function} failed`, {
        requestId: call.callId,
        function: call.function,
        exception: err.stack ?? `${err.name}: ${err.message}`,
      });
      const failed = new SystemError(`${call.function} failed with an internal error`, { callId: call.callId });
      return { ok: false, body: JSON.stringify(failed.toPayload()), errorType: failed.type, tx: used() };
    }
  }

  private async runChecked(call: Call, user: UserContext, opened: { tx: CallTransaction | null }): Promise<string> {
    const fn = call.function;
    this.admit(fn, user);
    const compiled = this.functions.get(fn)!;
    const spec = compiled.spec;
    const problems = compiled.input(call.params);
    if (problems.length > 0) {
      const summary = problems
        .slice(0, 3)
        .map((p) => `${p.path || "(input)"}: ${p.message}`)
        .join("; ");
      throw new ValidationError(`invalid input for ${fn}: ${summary}`, { errors: problems });
    }
    const now = Date.now();
    let budget = spec.timeout * 1000;
    if (call.deadline !== null) {
      const left = call.deadline - now;
      if (left <= 0) throw new DeadlineExceeded(`the deadline of ${fn} passed before it started`);
      budget = Math.min(budget, left);
    }
    const abort = new AbortController();
    const ctx = new Context({
      callId: call.callId,
      service: this.service.name,
      version: this.version,
      function: fn,
      headers: Object.freeze({ ...call.headers }),
      deadline: now + budget,
      user,
      config: this.config,
      logger: handlerLog.child({ requestId: call.callId, function: fn }),
      signal: abort.signal,
    });
    const method = this.service.handler[spec.method] as (input: unknown, ctx: Context) => unknown;
    const scope = runtimePlatform.scope({ callId: call.callId, service: this.service.name, user, deadline: now + budget });
    opened.tx = scope.tx;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const seconds = budget / 1000;
        reject(
          new DeadlineExceeded(`${fn} did not finish within ${formatSeconds(seconds)}s`, {
            timeout: Math.round(seconds * 1000) / 1000,
          }),
        );
      }, budget);
    });
    let result: unknown;
    const cutoff = this.memory?.cutoff();
    try {
      const running = runtimePlatform.run(scope, () => Promise.resolve().then(() => method.call(this.service.handler, call.params, ctx)));
      result = await Promise.race(cutoff === undefined ? [running, expired] : [running, expired, cutoff.promise]);
    } finally {
      clearTimeout(timer);
      cutoff?.release();
      abort.abort();
    }
    return this.output(compiled, result);
  }

  private output(compiled: Compiled, result: unknown): string {
    const name = compiled.spec.name;
    let text: string | undefined;
    try {
      text = JSON.stringify(result);
    } catch (exc) {
      log.error(`${name} returned output that is not JSON: ${(exc as Error).message}`);
      throw new SystemError(`${name} returned output that is not JSON`);
    }
    if (text === undefined) {
      log.error(`${name} returned output that is not JSON: ${typeof result}`);
      throw new SystemError(`${name} returned output that is not JSON`);
    }
    const body = JSON.parse(text) as unknown;
    const problems = compiled.output(body);
    if (problems.length > 0) {
      log.error(`${name} returned output that breaks its schema`, { problems });
      throw new SystemError(`${name} returned output that breaks its schema`);
    }
    return text;
  }
}

/** Python's `%.3g`: three significant digits, no trailing zeros. */
function formatSeconds(seconds: number): string {
  return String(Number(seconds.toPrecision(3)));
}

/** The wire form of a typed error; details that are not JSON are left out. */
function errorJson(payload: ErrorPayload, callId: string): string {
  try {
    const text = JSON.stringify(payload);
    if (text !== undefined) return text;
  } catch {
    // fall through
  }
  log.error(`[${callId}] ${payload.type} raised with details that are not JSON`, { requestId: callId });
  return JSON.stringify({ ...payload, details: null });
}
