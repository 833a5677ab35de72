/**
 * callId de-duplication in the runtime (the rules of runtimes/python/dormant_runtime/dedup.py): claim
 * before running, store the answer, wait on duplicates.
 *
 * A call is keyed by (function, callId) within the service and carries its input's fingerprint; a
 * repeat with another input is a `conflict`. Claims and completions are batched. A call this process
 * owns is in `local` from the moment its claim succeeds until it is finished or abandoned; only those
 * have their leases renewed. A duplicate of a call this process runs waits on an in-process promise;
 * a duplicate of a call another runtime runs polls the store until it finishes, or until that
 * runtime's lease expires and this one takes it over.
 *
 * Only deterministic outcomes are stored (results, `ValidationError`, `BusinessLogicError`, `NotFound`,
 * `Unauthenticated`, `Forbidden`); after any other error the claim is released so a retry runs again.
 */

import { Batcher } from "./batching";
import {
  CatalogUnavailable,
  type CallKey,
  type CallState,
  type CallStore,
  type Claim,
  InvalidCatalogRequest,
  callKey,
  matches,
  sleep,
} from "./calls";
import { log } from "./logger";
import { callIdProblem } from "./wire";

export const STORED_ERROR_TYPES: ReadonlySet<string> = new Set([
  "ValidationError",
  "BusinessLogicError",
  "NotFound",
  "Unauthenticated",
  "Forbidden",
]);
const POLL_MIN_MS = 10;
const POLL_MAX_MS = 200;
const PURGE_EVERY_MS = 60_000;
const FINISH_RETRY_MS = 5_000;

export class DeadlinePassed extends Error {}

interface Settled {
  ok: boolean;
  response: Buffer;
}

class Running {
  readonly done: Promise<Settled | null>;
  settle!: (value: Settled | null) => void;
  settled = false;

  constructor(
    readonly key: [string, string],
    readonly fingerprint: Buffer,
  ) {
    this.done = new Promise((resolve) => {
      this.settle = (value) => {
        if (!this.settled) {
          this.settled = true;
          resolve(value);
        }
      };
    });
  }
}

export class Deduplicator {
  private readonly claims: Batcher<Claim, CallState>;
  private readonly completions: Batcher<[[string, string], boolean, Buffer], boolean>;
  private readonly local = new Map<CallKey, Running>();
  /** Answers this process stored a moment ago: a claim of the same call that the store granted just
   * before the answer was stored (its result processed after) gets the answer instead of a second run. */
  private readonly recent = new Map<CallKey, Settled & { until: number }>();
  private timers: NodeJS.Timeout[] = [];

  constructor(readonly store: CallStore) {
    this.claims = new Batcher((items) => this.claimBatch(items));
    this.completions = new Batcher(async (items) => {
      const stored = await this.store.complete(items);
      return items.map((item) => stored.has(callKey(item[0][0], item[0][1])));
    });
  }

  async start(): Promise<void> {
    await this.store.open();
    const renew = setInterval(() => void this.renewLeases(), (this.store.leaseS * 1000) / 3);
    const purge = setInterval(() => void this.purge(), PURGE_EVERY_MS);
    renew.unref();
    purge.unref();
    this.timers = [renew, purge];
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    const running = [...this.local.values()].map((r) => r.key);
    if (running.length > 0) await this.store.release(running).catch(() => undefined);
    await this.store.close();
  }

  private async claimBatch(claims: Claim[]): Promise<CallState[]> {
    const found = await this.store.claim(claims);
    return claims.map((claim) => {
      const key = callKey(claim.function, claim.callId);
      let state = found.get(key)!;
      const justStored = this.recent.get(key);
      if (state.kind === "run" && !this.local.has(key) && justStored !== undefined && justStored.until > Date.now()) {
        state = { kind: "done", ok: justStored.ok, response: justStored.response, fingerprint: state.fingerprint };
      }
      if (state.kind === "run") {
        const running = this.local.get(key);
        if (running === undefined) {
          this.local.set(key, new Running([claim.function, claim.callId], claim.fingerprint));
        } else {
          // ours already: an earlier claim of this batch, or of an earlier one, runs it
          state = { kind: "running", fingerprint: running.fingerprint, mine: true };
        }
      }
      if (state.kind !== "conflict" && !matches(state, claim.fingerprint)) {
        state = { kind: "conflict", fingerprint: state.fingerprint };
      }
      return state;
    });
  }

  /** `run` (ours now), `done` (answer stored), `running` (wait) or `conflict`. */
  async claim(claim: Claim): Promise<CallState> {
    const problem = callIdProblem(claim.callId);
    if (problem !== null) throw new InvalidCatalogRequest(problem);
    const running = this.local.get(callKey(claim.function, claim.callId));
    if (running !== undefined) {
      if (!running.fingerprint.equals(claim.fingerprint)) return { kind: "conflict", fingerprint: running.fingerprint };
      return { kind: "running", fingerprint: running.fingerprint, mine: true };
    }
    return this.claims.submit(claim);
  }

  /** Wait for a call someone else runs: `done`, `conflict`, or `run` if it became ours. */
  async wait(claim: Claim, deadline: number | null): Promise<CallState> {
    const key = callKey(claim.function, claim.callId);
    let delay = POLL_MIN_MS;
    for (;;) {
      const running = this.local.get(key);
      if (running !== undefined) {
        if (!running.fingerprint.equals(claim.fingerprint)) return { kind: "conflict", fingerprint: running.fingerprint };
        const settled = await withDeadline(running.done, deadline);
        if (settled === "deadline") throw new DeadlinePassed(claim.callId);
        if (settled !== null) return { kind: "done", ok: settled.ok, response: settled.response };
        // the local run lost its claim: find out from the store who finishes it
      }
      if (deadline !== null && Date.now() >= deadline) throw new DeadlinePassed(claim.callId);
      try {
        const state = (await this.store.read([[claim.function, claim.callId]])).get(key)!;
        if (state.kind !== "absent" && !matches(state, claim.fingerprint)) {
          return { kind: "conflict", fingerprint: state.fingerprint };
        }
        if (state.kind === "done") return state;
        if (state.kind === "absent" || state.leaseExpired || (state.mine && !this.local.has(key))) {
          const claimed = await this.claim(claim);
          if (claimed.kind !== "running") return claimed;
          if (this.local.has(key)) continue;
        }
      } catch (exc) {
        if (!(exc instanceof CatalogUnavailable)) throw exc;
        log.info(`[${claim.callId}] waiting for the store: ${exc.message}`, { requestId: claim.callId });
      }
      const pause = deadline === null ? delay : Math.min(delay, Math.max(0, deadline - Date.now()));
      await sleep(pause);
      delay = Math.min(delay * 2, POLL_MAX_MS);
    }
  }

  /** Record how the call we ran ended (store it, or release the claim) and wake local duplicates. */
  async finish(key: [string, string], ok: boolean, response: Buffer, errorType: string | null): Promise<boolean> {
    const id = callKey(key[0], key[1]);
    const local = this.local.get(id);
    // Duplicates get the answer now; the call stays ours (in `local`) until the store has the answer.
    local?.settle({ ok, response });
    try {
      const keep = ok || (errorType !== null && STORED_ERROR_TYPES.has(errorType));
      const giveUp = Date.now() + FINISH_RETRY_MS;
      let delay = 50;
      for (;;) {
        try {
          if (keep) {
            if (await this.completions.submit([key, ok, response])) {
              this.remember(id, ok, response);
              return true;
            }
            log.warn(`[${key[1]}] the claim was taken over; the answer was not stored`, { requestId: key[1] });
            return false;
          }
          await this.store.release([key]);
          return true;
        } catch (exc) {
          if (exc instanceof CatalogUnavailable && Date.now() + delay <= giveUp) {
            await sleep(delay);
            delay = Math.min(delay * 2, 1000);
            continue;
          }
          log.warn(`[${key[1]}] could not ${keep ? "store the answer" : "release the claim"}: ${(exc as Error).message}`, {
            requestId: key[1],
          });
          return false;
        }
      }
    } finally {
      if (this.local.get(id) === local) this.local.delete(id);
    }
  }

  private remember(id: CallKey, ok: boolean, response: Buffer): void {
    const now = Date.now();
    for (const [key, entry] of this.recent) {
      if (entry.until > now) break; // in insertion order: the rest are younger
      this.recent.delete(key);
    }
    this.recent.set(id, { ok, response, until: now + this.store.leaseS * 1000 });
  }

  /** The answer was stored by the call's own transaction (`stored`), or the claim was lost (not stored). */
  settled(key: [string, string], ok: boolean, response: Buffer, stored: boolean): void {
    const id = callKey(key[0], key[1]);
    const local = this.local.get(id);
    this.local.delete(id);
    if (stored) this.remember(id, ok, response);
    local?.settle(stored ? { ok, response } : null);
  }

  /** Give a claim back without an answer (the call was cut off while draining). */
  async abandon(key: [string, string]): Promise<void> {
    const id = callKey(key[0], key[1]);
    const local = this.local.get(id);
    this.local.delete(id);
    local?.settle(null);
    await this.store.release([key]).catch(() => undefined);
  }

  private async renewLeases(): Promise<void> {
    const running = [...this.local.values()].map((r) => r.key);
    if (running.length === 0) return;
    try {
      await this.store.renew(running);
    } catch (exc) {
      log.warn(`cannot renew the leases of ${running.length} running calls: ${(exc as Error).message}`);
    }
  }

  private async purge(): Promise<void> {
    try {
      const removed = await this.store.purgeExpired();
      if (removed > 0) log.info(`purged ${removed} expired call results`);
    } catch (exc) {
      log.debug(`purging expired call results failed: ${(exc as Error).message}`);
    }
  }
}

async function withDeadline<T>(promise: Promise<T>, deadline: number | null): Promise<T | "deadline"> {
  if (deadline === null) return promise;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"deadline">((resolve) => {
    timer = setTimeout(() => resolve("deadline"), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
