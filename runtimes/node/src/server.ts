/**
 * Serving one loaded service over MQTT 5 (the behaviour of runtimes/python/dormant_runtime/server.py):
 * subscribe, decode, authenticate, de-duplicate, dispatch, reply, then acknowledge, and drain.
 *
 * The connection uses a persistent session (clean start off, session expiry 120 s) under a client id
 * stable per service, version, slot and generation, so a runtime restarted in the same slot gets the
 * requests its predecessor had not acknowledged. A request's PUBACK is sent only after its answer was
 * published and the broker confirmed it: MQTT.js acknowledges a QoS 1 message as soon as its handler
 * is called, so the runtime holds that PUBACK back (`DeferredAcks`) and sends it itself, on the same
 * connection, once the call is answered (a PUBACK for a connection that is gone is dropped: the broker
 * delivers the request again). The broker's in-flight window is the receive maximum (`--max-in-flight`).
 */

import { performance } from "node:perf_hooks";

import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";

import type { CallAuthenticator } from "./authn";
import { type Claim, CatalogUnavailable } from "./calls";
import type { UserContext } from "./context";
import { DeadlinePassed, type Deduplicator, STORED_ERROR_TYPES } from "./dedup";
import { Dispatcher, type Outcome } from "./dispatcher";
import { Conflict, DeadlineExceeded, DormantError, SystemError, Throttled, Unavailable, ValidationError } from "./errors";
import { fingerprintOf } from "./json";
import { EXIT_OUT_OF_MEMORY } from "./limits";
import { log } from "./logger";
import { type CallTransaction, runtimePlatform } from "./platform";
import type { CallStats } from "./stats";
import {
  type Call,
  CallRejected,
  MAX_STORED_CALL_ID_BYTES,
  callIdProblem,
  configTopic,
  decodeCall,
  encodeResponse,
  replyExpiry,
  servingFilters,
} from "./wire";

export const SESSION_EXPIRY_S = 120;
export const DEFAULT_MAX_IN_FLIGHT = 256;
const STORE_OUTAGE_MS = 30_000;
const STORE_RETRY_MIN_MS = 50;
const STORE_RETRY_MAX_MS = 1000;
const QUEUE_SETTLE_MS = 100;
const FIRST_REVISION_WAIT_MS = 1000;
const SESSION_TAKEN_OVER = 0x8e;
const PERMANENT_PUBLISH_FAILURES = new Set([0x81, 0x87, 0x90]);
const MAX_RUNS_PER_DELIVERY = 3;

async function endQuietly(tx: CallTransaction, commit: boolean, callId: string): Promise<void> {
  try {
    await tx.end(commit);
  } catch (exc) {
    log.info(`[${callId}] ending the handler's transaction: ${(exc as Error).message}`, { requestId: callId });
  }
}

export interface ServerOptions {
  brokerOptions: IClientOptions;
  version: number;
  live: boolean;
  clientId: string;
  dedup: Deduplicator | null;
  maxInFlight: number;
  stats: CallStats | null;
  authenticator: CallAuthenticator;
  concurrencyLimit: number | null;
}

type Ack = () => void;

interface SendPacket {
  (packet: Record<string, unknown>, cb?: (err?: Error) => void, cbStorePut?: unknown, noStore?: boolean): void;
}

/** Holds back MQTT.js's automatic PUBACKs of requests, to send each once its call is answered. */
class DeferredAcks {
  private readonly held = new Set<number>();
  private readonly send: SendPacket;
  generation = 0;

  constructor(private readonly client: MqttClient) {
    const internals = client as unknown as { _sendPacket: SendPacket };
    this.send = internals._sendPacket.bind(client);
    internals._sendPacket = (packet, cb, cbStorePut, noStore) => {
      if (packet.cmd === "puback" && this.held.delete(packet.messageId as number)) {
        cb?.(); // the packet pump goes on; the PUBACK goes later, from `ack`
        return;
      }
      this.send(packet, cb, cbStorePut, noStore);
    };
    client.on("connect", () => {
      this.generation++;
      this.held.clear();
    });
  }

  /** Called for a request as it arrives (before MQTT.js sends its PUBACK): its acknowledgement. */
  hold(packet: IPublishPacket): Ack {
    if (packet.qos !== 1 || packet.messageId === undefined) return () => undefined;
    const messageId = packet.messageId;
    const generation = this.generation;
    this.held.add(messageId);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (generation !== this.generation || !this.client.connected) return; // that connection is gone
      this.send({ cmd: "puback", messageId, reasonCode: 0 });
    };
  }
}

export class Server {
  readonly service: string;
  readonly filters: string[];
  private client: MqttClient | null = null;
  private acks: DeferredAcks | null = null;
  private readonly tasks = new Set<Promise<void>>();
  private readonly running = new Set<string>();
  private draining = false;
  private readyResolve!: () => void;
  readonly ready: Promise<void>;
  replaced = false;
  connected = false;
  private configArrived = false;
  private configRevision: number | null = null;

  constructor(
    readonly dispatcher: Dispatcher,
    readonly options: ServerOptions,
  ) {
    this.service = dispatcher.service.name;
    this.filters = servingFilters(this.service, options.version, options.live);
    this.ready = new Promise((resolve) => (this.readyResolve = resolve));
  }

  get inFlight(): number {
    return this.tasks.size;
  }

  /** Connect, subscribe (the live configuration first), and serve until drained. */
  start(): void {
    const o = this.options;
    const client = mqtt.connect({
      ...o.brokerOptions,
      protocolVersion: 5,
      clientId: o.clientId,
      clean: false,
      reconnectPeriod: 250,
      connectTimeout: 10_000,
      keepalive: 30,
      resubscribe: true,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_S, receiveMaximum: Math.min(65535, Math.max(1, o.maxInFlight)) },
    });
    this.client = client;
    this.acks = new DeferredAcks(client);
    // Handlers' events (ctx.messaging.send) go out on this connection, under the runtime's broker login.
    runtimePlatform.usePublisher(async (topic, payload, userProperties, timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Unavailable("messaging: the broker did not confirm the event in time")), timeoutMs);
      });
      try {
        await Promise.race([client.publishAsync(topic, payload, { qos: 1, properties: { userProperties } }), expired]);
      } catch (exc) {
        if (exc instanceof DormantError) throw exc;
        throw new Unavailable(`messaging: the event could not be published: ${(exc as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    });
    let subscribed = false;
    client.on("connect", () => {
      // No Nagle delay: an answer is one small packet that must leave at once.
      (client as unknown as { stream?: { setNoDelay?: (on: boolean) => void } }).stream?.setNoDelay?.(true);
      this.connected = true;
      if (subscribed) return; // MQTT.js resubscribes by itself after a reconnect
      subscribed = true;
      void this.subscribe(client);
    });
    client.on("close", () => {
      this.connected = false;
    });
    client.on("offline", () => {
      this.connected = false;
    });
    client.on("disconnect", (packet) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) {
        // Reconnecting would take the session back from the runtime that has it, for ever.
        this.replaced = true;
        this.connected = false;
        log.warn("another connection took this runtime's session over; waiting to be drained");
        client.end(true);
      }
    });
    client.on("error", (err) => {
      log.warn(`broker connection: ${err.message}`);
    });
    client.on("message", (topic, payload, packet) => this.onMessage(topic, payload, packet));
  }

  private async subscribe(client: MqttClient): Promise<void> {
    try {
      await client.subscribeAsync([configTopic(this.service), configTopic()], { qos: 1 });
      const waited = Date.now();
      while (!this.configArrived && Date.now() - waited < FIRST_REVISION_WAIT_MS) await sleep(10);
      if (!this.configArrived) {
        this.configArrived = true;
        log.info(`no live configuration for ${this.service} is published; serving without one`);
      }
      if (this.draining) return;
      const granted = await client.subscribeAsync(this.filters, { qos: 1 });
      const refused = granted.filter((g) => g.qos > 2);
      if (refused.length > 0) {
        log.error(`the broker refused the subscriptions ${refused.map((g) => g.topic).join(", ")}`);
      }
      log.info(`serving ${this.service} v${this.options.version} on ${this.filters.join(", ")}`);
      this.readyResolve();
    } catch (exc) {
      log.warn(`subscribing failed: ${(exc as Error).message}; retrying`);
      await sleep(500);
      if (!this.draining && this.client === client) void this.subscribe(client);
    }
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const ack = this.acks!.hold(packet);
    if (topic === configTopic(this.service)) {
      ack();
      this.applyConfig(payload);
      return;
    }
    if (topic === configTopic()) {
      ack();
      this.configArrived = true;
      return;
    }
    if (this.draining) return; // not acknowledged: the broker hands it to another member, or keeps it
    const started = performance.now();
    const task = this.handle(topic, payload, packet, ack, started).catch((exc: unknown) => {
      // A bug in answering must not leave the request to be redelivered forever.
      log.error(`answering a request on ${topic} failed: ${(exc as Error).stack ?? String(exc)}`);
      ack();
    });
    this.tasks.add(task);
    void task.finally(() => {
      this.tasks.delete(task);
      if (this.dispatcher.outOfMemory) {
        // The call that went past the memory limit has its answer; the calls still in flight are not
        // acknowledged and are delivered again, to the runtime the pod starts in this one's place.
        log.error(`a call went past the memory limit; this runtime ends (peak RSS ${this.dispatcher.memory?.peakRssMb} MB)`);
        process.exit(EXIT_OUT_OF_MEMORY);
      }
    });
  }

  private applyConfig(payload: Buffer): void {
    this.configArrived = true;
    if (payload.length === 0) return;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString("utf8"));
    } catch {
      log.warn("ignored a live configuration that is not JSON");
      return;
    }
    const b = body as Record<string, unknown> | null;
    const revision = b?.revision;
    const values = b?.values;
    if (
      typeof revision !== "number" ||
      !Number.isInteger(revision) ||
      values === null ||
      typeof values !== "object" ||
      Array.isArray(values)
    ) {
      log.warn("ignored a live configuration without an integer revision and a values object");
      return;
    }
    if (revision !== this.configRevision) {
      this.dispatcher.config = Object.freeze({ ...(values as Record<string, unknown>) });
      this.configRevision = revision;
      log.info(`live configuration of ${this.service}: revision ${revision}`);
    }
  }

  private async handle(topic: string, payload: Buffer, packet: IPublishPacket, ack: Ack, started: number): Promise<void> {
    const props = packet.properties ?? {};
    let call: Call;
    try {
      call = decodeCall({
        topic,
        payload,
        responseTopic: props.responseTopic,
        correlationData: props.correlationData,
        userProperties: props.userProperties,
        messageExpiryInterval: props.messageExpiryInterval,
      });
    } catch (exc) {
      if (!(exc instanceof CallRejected)) throw exc;
      call = exc.call;
      log.info(`[${call.callId}] rejected call on ${topic}: ${exc.error.type}: ${exc.error.message}`, { requestId: call.callId });
      await this.answer(call, false, JSON.stringify(exc.error.toPayload()), exc.error.type, ack, started);
      return;
    }
    let user: UserContext;
    try {
      // Before anything is looked up or stored: a stored answer goes only to a caller who may make the call.
      user = await this.options.authenticator.userOf(call.headers);
      this.dispatcher.admit(call.function, user);
    } catch (exc) {
      const refused = asTyped(exc, call);
      log.info(`[${call.callId}] refused call of ${call.function}: ${refused.type}: ${refused.message}`, { requestId: call.callId });
      await this.answer(call, false, JSON.stringify(refused.toPayload()), refused.type, ack, started);
      return;
    }
    // A retry of a call this runtime runs (same callId) is no new work: it waits for that run's answer.
    const fresh = !this.running.has(call.callId);
    const limit = this.options.concurrencyLimit;
    if (fresh && limit !== null && this.running.size >= limit) {
      const throttled = new Throttled(
        `${this.service} is at its concurrency limit (${limit} calls at once on this replica)`,
        { limit },
      );
      await this.answer(call, false, JSON.stringify(throttled.toPayload()), throttled.type, ack, started);
      return;
    }
    if (fresh) this.running.add(call.callId);
    try {
      const dedup = this.options.dedup;
      if (dedup === null || !call.callIdGiven) {
        const outcome = await this.dispatcher.run(call, user);
        if (outcome.tx !== null) {
          try {
            await outcome.tx.end(outcome.ok);
          } catch (exc) {
            await endQuietly(outcome.tx, false, call.callId);
            log.warn(`[${call.callId}] committing the call's writes failed: ${(exc as Error).message}`, { requestId: call.callId });
            const lost = new Unavailable("the call's writes could not be committed; retry later", { callId: call.callId });
            await this.answer(call, false, JSON.stringify(lost.toPayload()), lost.type, ack, started);
            return;
          }
        }
        await this.answer(call, outcome.ok, outcome.body, outcome.errorType, ack, started);
        return;
      }
      await this.handleOnce(call, user, dedup, ack, started);
    } finally {
      if (fresh) this.running.delete(call.callId);
    }
  }

  /** Run the call at most once across every runtime of the service; answer repeats from the store. */
  private async handleOnce(call: Call, user: UserContext, dedup: Deduplicator, ack: Ack, started: number): Promise<void> {
    const problem = callIdProblem(call.callId);
    if (problem !== null) {
      const refused = new ValidationError(problem, { limit: MAX_STORED_CALL_ID_BYTES });
      await this.answer(call, false, JSON.stringify(refused.toPayload()), refused.type, ack, started);
      return;
    }
    const claim: Claim = {
      function: call.function,
      callId: call.callId,
      fingerprint: fingerprintOf(call.canonical ?? "null", user.userId),
    };
    for (let runs = 1; ; runs++) {
      let state;
      try {
        state = await this.awaitTurn(call, claim, dedup);
      } catch (exc) {
        const typed = asTyped(exc, call);
        await this.answer(call, false, JSON.stringify(typed.toPayload()), typed.type, ack, started);
        return;
      }
      if (state.kind === "done") {
        const body = (state.response ?? Buffer.from("null")).toString("utf8");
        await this.answer(call, Boolean(state.ok), body, state.ok ? null : errorTypeOf(body), ack, started);
        return;
      }
      if (state.kind === "conflict") {
        const reused = new Conflict(
          `callId '${call.callId}' was already used for a ${call.function} call with another input or by another caller;` +
            " use a new callId for a new call",
          { callId: call.callId, function: call.function },
        );
        await this.answer(call, false, JSON.stringify(reused.toPayload()), reused.type, ack, started);
        return;
      }
      // The call is ours (claimed, or taken over from a dead owner).
      const outcome = await this.dispatcher.run(call, user);
      const response = Buffer.from(outcome.body, "utf8");
      if (outcome.tx === null) {
        const [, published] = await Promise.all([
          dedup.finish([claim.function, claim.callId], outcome.ok, response, outcome.errorType),
          this.publishAnswer(call, outcome.ok, outcome.body, outcome.errorType, started),
        ]);
        if (published) ack();
        return;
      }
      const verdict = await this.commitWithAnswer(claim, outcome, response, dedup);
      if (verdict === "answer") {
        await this.answer(call, outcome.ok, outcome.body, outcome.errorType, ack, started);
        return;
      }
      if (verdict === "failed") {
        const failed = new SystemError(`${call.function} failed with an internal error`, { callId: call.callId });
        await this.answer(call, false, JSON.stringify(failed.toPayload()), failed.type, ack, started);
        return;
      }
      // "again": the claim was lost or the connection broke around the commit; the store says what happened.
      if (runs >= MAX_RUNS_PER_DELIVERY) {
        log.warn(`[${call.callId}] gave up after ${runs} runs could not commit`, { requestId: call.callId });
        await dedup.abandon([claim.function, claim.callId]);
        const lost = new Unavailable("the database connection was lost while the call ran; retry later", { callId: call.callId });
        await this.answer(call, false, JSON.stringify(lost.toPayload()), lost.type, ack, started);
        return;
      }
    }
  }

  /**
   * End the handler's transaction: commit it together with its stored answer, fenced by the claim (as
   * server.py's `_commit_with_answer`). `answer`: the outcome stands (committed with its stored answer, or
   * an error that is not stored: rolled back, the claim released). `again`: the claim was lost or the
   * connection broke; `failed`: the commit failed for a reason a retry cannot fix. Never throws.
   */
  private async commitWithAnswer(
    claim: Claim,
    outcome: Outcome,
    response: Buffer,
    dedup: Deduplicator,
  ): Promise<"answer" | "again" | "failed"> {
    const tx = outcome.tx!;
    const key: [string, string] = [claim.function, claim.callId];
    if (!outcome.ok && tx.broken) {
      await endQuietly(tx, false, claim.callId);
      dedup.settled(key, outcome.ok, response, false);
      return "again";
    }
    if (!(outcome.ok || (outcome.errorType !== null && STORED_ERROR_TYPES.has(outcome.errorType)))) {
      await endQuietly(tx, false, claim.callId);
      await dedup.finish(key, outcome.ok, response, outcome.errorType);
      return "answer";
    }
    let stored = false;
    try {
      stored = await dedup.store.completeIn((text, values) => tx.runAsRuntime(text, values), key, outcome.ok, response);
      await tx.end(stored);
    } catch (exc) {
      const code = (exc as { code?: unknown }).code;
      const transient = tx.broken || typeof code !== "string" || code.startsWith("08") || code.startsWith("40") || code.startsWith("57P");
      await endQuietly(tx, false, claim.callId);
      if (transient) {
        log.warn(`[${claim.callId}] the commit of the call's writes was cut off: ${(exc as Error).message}`, { requestId: claim.callId });
        dedup.settled(key, outcome.ok, response, false);
        return "again";
      }
      log.error(`[${claim.callId}] committing the call's writes failed: ${(exc as Error).message}`, { requestId: claim.callId });
      await dedup.finish(key, false, response, "SystemError");
      return "failed";
    }
    dedup.settled(key, outcome.ok, response, stored);
    return stored ? "answer" : "again";
  }

  /** Claim the call, or wait for whoever runs it; retries an unreachable store until the deadline or 30 s. */
  private async awaitTurn(call: Call, claim: Claim, dedup: Deduplicator) {
    let giveUp = Date.now() + STORE_OUTAGE_MS;
    if (call.deadline !== null) giveUp = Math.min(giveUp, call.deadline);
    let delay = STORE_RETRY_MIN_MS;
    for (;;) {
      try {
        let state = await dedup.claim(claim);
        if (state.kind === "running") state = await dedup.wait(claim, call.deadline);
        return state;
      } catch (exc) {
        if (exc instanceof DeadlinePassed) throw new DeadlineExceeded("the deadline passed while the same call ran elsewhere");
        if (exc instanceof CatalogUnavailable) {
          if (Date.now() + delay >= giveUp) {
            log.warn(`[${call.callId}] call de-duplication store unavailable: ${exc.message}`, { requestId: call.callId });
            throw new Unavailable("the call de-duplication store is unavailable; retry later");
          }
          log.info(`[${call.callId}] call de-duplication store unavailable, retrying: ${exc.message}`, { requestId: call.callId });
          await sleep(delay);
          delay = Math.min(delay * 2, STORE_RETRY_MAX_MS);
          continue;
        }
        log.error(`[${call.callId}] the call de-duplication store refused the call: ${(exc as Error).message}`, {
          requestId: call.callId,
        });
        throw new SystemError("the call de-duplication store refused the call");
      }
    }
  }

  /** Publish the answer (QoS 1, confirmed by the broker), then acknowledge the request. */
  private async answer(call: Call, ok: boolean, body: string, errorType: string | null, ack: Ack, started: number): Promise<void> {
    if (await this.publishAnswer(call, ok, body, errorType, started)) ack();
  }

  /** True once the broker has the answer (or there is nobody to answer). */
  private async publishAnswer(call: Call, ok: boolean, body: string, errorType: string | null, started: number): Promise<boolean> {
    this.options.stats?.record(ok, errorType, call.function, started);
    const client = this.client;
    if (call.replyTo === null || client === null) return true;
    const payload = encodeResponse(call, ok, body);
    const properties: Record<string, unknown> = { userProperties: { status: ok ? "ok" : "error" } };
    if (call.correlation !== null) properties.correlationData = call.correlation;
    const expiry = replyExpiry(call.deadline);
    if (expiry !== undefined) properties.messageExpiryInterval = expiry;
    try {
      await client.publishAsync(call.replyTo, payload, { qos: 1, properties });
    } catch (exc) {
      const code = (exc as { code?: number }).code;
      if (typeof code === "number" && PERMANENT_PUBLISH_FAILURES.has(code)) {
        log.warn(`[${call.callId}] the response cannot be published to ${JSON.stringify(call.replyTo)}: ${(exc as Error).message}`, {
          requestId: call.callId,
        });
        return true;
      }
      log.warn(`[${call.callId}] could not publish the response: ${(exc as Error).message}`, { requestId: call.callId });
      return false;
    }
    return true;
  }

  /** Stop taking calls, finish those in flight (up to `timeoutMs`), disconnect; the calls cut off. */
  async drain(timeoutMs: number): Promise<number> {
    if (this.draining) return 0;
    this.draining = true;
    const client = this.client;
    if (client !== null && !this.replaced && client.connected) {
      try {
        await withTimeout(client.unsubscribeAsync(this.filters), 5000);
      } catch (exc) {
        log.warn(`unsubscribing failed: ${(exc as Error).message}`);
      }
      await sleep(QUEUE_SETTLE_MS); // messages sent before the UNSUBACK may still be on their way
    }
    let left = 0;
    if (this.tasks.size > 0) {
      const pending = [...this.tasks];
      const all = Promise.allSettled(pending).then(() => "done" as const);
      if ((await withTimeout(all, timeoutMs).catch(() => "timeout" as const)) === "timeout") left = this.tasks.size;
    }
    if (client !== null) {
      if (this.replaced || !client.connected) {
        await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
      } else {
        // End the session: what is not acknowledged goes to the other members of the shared group.
        await new Promise<void>((resolve) => client.end(false, { properties: { sessionExpiryInterval: 0 } }, () => resolve()));
      }
    }
    return left;
  }
}

function asTyped(exc: unknown, call: Call): DormantError {
  if (exc instanceof DormantError) return exc;
  log.error(`[${call.callId}] ${(exc as Error)?.stack ?? String(exc)}`, { requestId: call.callId });
  return new SystemError("the call could not be admitted");
}

function errorTypeOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { type?: unknown };
    return typeof parsed?.type === "string" ? parsed.type : "SystemError";
  } catch {
    return "SystemError";
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
