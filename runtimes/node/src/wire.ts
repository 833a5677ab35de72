/**
 * The Dormant wire protocol as the Node runtime reads and writes it (docs/wire-protocol.md; the same
 * rules as libs/python/dormant/wire.py, property by property).
 *
 * `decodeCall` is total: whatever a client puts in a topic, payload or property, it returns a `Call`
 * or throws `CallRejected` carrying a typed error and what is known of the call (where to answer, if
 * anywhere). A reply destination that is not a plain topic under `reply/` is never published to.
 */

import { createHash, randomBytes } from "node:crypto";

import { DormantError, NotFound, ValidationError } from "./errors";
import { JsonSyntaxError, canonicalOf, parseJson } from "./json";

export const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;
export const MAX_CALL_ID_BYTES = 256;
export const MAX_STORED_CALL_ID_BYTES = 512;
export const MAX_REPLY_TOPIC_BYTES = 1024;
export const MAX_DEADLINE_DIGITS = 15;
export const MAX_TRACESTATE_BYTES = 512;
export const MAX_EXPIRY_S = 2 ** 32 - 1;
export const MAX_STRING_BYTES = 65535;
const MAX_PRINTABLE = 200;

export const PROP_STATUS = "status";
export const PROP_DEADLINE = "deadline";
export const PROP_AUTHORIZATION = "authorization";
export const PROP_TRACEPARENT = "traceparent";
export const PROP_TRACESTATE = "tracestate";
export const CONTENT_TYPE_JSON = "application/json";

const DEADLINE = /^[0-9]{1,15}$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const VERSION_SEGMENT = /^v([0-9]+)$/;

/** One decoded request, in either form. */
export interface Call {
  service: string;
  function: string;
  version: number | null;
  callId: string;
  params: unknown;
  /** The canonical JSON of `params` (for the fingerprint); null until the input is read. */
  canonical: string | null;
  replyTo: string | null;
  correlation: Buffer | null;
  /** Absolute deadline, epoch milliseconds. */
  deadline: number | null;
  headers: Record<string, string>;
  envelope: boolean;
  messageId: string | null;
  /** The caller chose the callId (it can retry with it); a made-up one is never de-duplicated. */
  callIdGiven: boolean;
}

/** A request that cannot be dispatched; `call` holds what is known so the error can be answered. */
export class CallRejected extends Error {
  constructor(
    readonly error: DormantError,
    readonly call: Call,
  ) {
    super(error.message);
  }
}

export interface Target {
  service: string;
  function: string | null;
  version: number | null;
}

/** Read `service/{svc}`, `service/{svc}/{fn}` or `service/{svc}/v{N}/{fn}`; null otherwise. */
export function parseTopic(topic: string): Target | null {
  const parts = topic.split("/");
  if (parts.length < 2 || parts[0] !== "service" || !parts[1]) return null;
  if (parts.length === 2) return { service: parts[1], function: null, version: null };
  if (parts.length === 3) return { service: parts[1], function: parts[2], version: null };
  if (parts.length === 4) {
    const m = VERSION_SEGMENT.exec(parts[2]);
    if (m) return { service: parts[1], function: parts[3], version: Number(m[1]) };
  }
  return null;
}

/** Shared-subscription filters a runtime of `service` version `version` subscribes to. */
export function servingFilters(service: string, version: number, live: boolean): string[] {
  const filters = [`$share/${service}-v${version}/service/${service}/v${version}/+`];
  if (live) filters.push(`$share/${service}/service/${service}/+`, `$share/${service}/service/${service}`);
  return filters;
}

export function statsTopic(service: string, version: number, podId: string): string {
  return `mesh/stats/${service}/v${version}/${podId}`;
}

export function configTopic(service?: string): string {
  return service === undefined ? "mesh/config" : `mesh/config/${service}`;
}

/** The text form of correlation data: printable ASCII (up to 200 bytes) as is, anything else as hex. */
export function callIdText(data: Uint8Array): string {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length > MAX_CALL_ID_BYTES) {
    return "oversized-" + createHash("sha256").update(buf).digest("hex").slice(0, 32);
  }
  if (buf.length > 0 && buf.length <= MAX_PRINTABLE && buf.every((b) => b >= 0x20 && b <= 0x7e)) {
    return buf.toString("latin1");
  }
  return buf.toString("hex");
}

/** Why the call store cannot keep `callId` (too long as text, or a NUL), or null (catalog/calls.py). */
export function callIdProblem(callId: string): string | null {
  if (isLoneSurrogateText(callId)) return "a callId must be valid UTF-8 text";
  const size = Buffer.byteLength(callId, "utf8");
  if (size > MAX_STORED_CALL_ID_BYTES) {
    return `a callId is at most ${MAX_STORED_CALL_ID_BYTES} bytes (as text), got ${size}`;
  }
  if (callId.includes("\u0000")) return "a callId must not contain NUL characters";
  return null;
}

function isLoneSurrogateText(value: string): boolean {
  return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value);
}

function forbiddenCodePoint(code: number): boolean {
  return (
    code <= 0x1f ||
    (code >= 0x7f && code <= 0x9f) ||
    (code >= 0xd800 && code <= 0xdfff) ||
    (code >= 0xfdd0 && code <= 0xfdef) ||
    (code & 0xfffe) === 0xfffe
  );
}

/** Why `value` cannot be sent as an MQTT UTF-8 string, or null when it can. */
export function mqttStringProblem(value: string): string | null {
  if (value.length > MAX_STRING_BYTES) return `longer than ${MAX_STRING_BYTES} bytes`;
  for (let i = 0; i < value.length; i++) {
    const code = value.codePointAt(i)!;
    if (code > 0xffff) {
      if ((code & 0xfffe) === 0xfffe) return `holds the forbidden character U+${hex4(code)}`;
      i++;
      continue;
    }
    if (forbiddenCodePoint(code)) return `holds the forbidden character U+${hex4(code)}`;
  }
  if (Buffer.byteLength(value, "utf8") > MAX_STRING_BYTES) return `longer than ${MAX_STRING_BYTES} bytes of UTF-8`;
  return null;
}

function hex4(code: number): string {
  return code.toString(16).toUpperCase().padStart(4, "0");
}

/** Why `topic` may not receive an answer, or null when it may (docs/wire-protocol.md, "Reply topics"). */
export function replyTopicProblem(topic: string): string | null {
  if (!topic.startsWith("reply/")) return "a reply topic must start with 'reply/'";
  if (topic.length > MAX_REPLY_TOPIC_BYTES) return `a reply topic is at most ${MAX_REPLY_TOPIC_BYTES} bytes`;
  if (topic.includes("+") || topic.includes("#")) return "a reply topic may not hold a wildcard (+ or #)";
  if (topic.split("/").includes("")) return "a reply topic may not have an empty level";
  const problem = mqttStringProblem(topic);
  if (problem !== null) return `a reply topic must be valid MQTT UTF-8 (${problem})`;
  if (Buffer.byteLength(topic, "utf8") > MAX_REPLY_TOPIC_BYTES) {
    return `a reply topic is at most ${MAX_REPLY_TOPIC_BYTES} bytes`;
  }
  return null;
}

/** A `deadline` user property: 1 to 15 ASCII digits of epoch milliseconds. */
export function parseDeadline(value: string): number {
  if (!DEADLINE.test(value)) {
    const shown = JSON.stringify(value.slice(0, 40)) + (value.length > 40 ? "..." : "");
    throw new ValidationError(
      `the deadline user property must be 1 to ${MAX_DEADLINE_DIGITS} digits of epoch milliseconds, got ${shown}`,
      { property: PROP_DEADLINE },
    );
  }
  return Number(value);
}

/** Drop trace context that is not W3C version-00 shape (and a tracestate without it or over 512 bytes). */
export function checkTraceContext(headers: Record<string, string>): void {
  const parent = headers[PROP_TRACEPARENT];
  if (parent !== undefined) {
    const m = TRACEPARENT.exec(parent);
    if (m === null || m[1] === "ff" || m[2] === "0".repeat(32) || m[3] === "0".repeat(16)) {
      delete headers[PROP_TRACEPARENT];
    }
  }
  const state = headers[PROP_TRACESTATE];
  if (
    state !== undefined &&
    (headers[PROP_TRACEPARENT] === undefined || Buffer.byteLength(state, "utf8") > MAX_TRACESTATE_BYTES)
  ) {
    delete headers[PROP_TRACESTATE];
  }
}

/** The parts of an MQTT 5 PUBLISH a request is read from (MQTT.js's packet, or a test's). */
export interface RequestMessage {
  topic: string;
  payload: Uint8Array;
  responseTopic?: unknown;
  correlationData?: unknown;
  userProperties?: unknown;
  messageExpiryInterval?: unknown;
}

function validText(value: unknown): value is string {
  // MQTT.js decodes strings with replacement characters; a U+FFFD stands for bytes that were not UTF-8.
  return typeof value === "string" && !isLoneSurrogateText(value) && !value.includes("\ufffd");
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "number") return "a number";
  if (typeof value === "string") return "a string";
  if (Array.isArray(value)) return "an array";
  return "an object";
}

function freshCallId(): string {
  return randomBytes(16).toString("hex");
}

/** Decode a request; throw `CallRejected` (with what is known) for anything malformed. */
export function decodeCall(message: RequestMessage, now: number = Date.now()): Call {
  const call: Call = {
    service: "",
    function: "",
    version: null,
    callId: freshCallId(),
    params: null,
    canonical: null,
    replyTo: null,
    correlation: null,
    deadline: null,
    headers: {},
    envelope: false,
    messageId: null,
    callIdGiven: false,
  };
  try {
    decode(call, message, now);
  } catch (exc) {
    if (exc instanceof CallRejected) throw exc;
    if (exc instanceof DormantError) throw new CallRejected(exc, call);
    // a parsing rule missed a case: still a typed refusal, never a crash
    if (call.replyTo !== null && replyTopicProblem(call.replyTo) !== null) call.replyTo = null;
    const name = exc instanceof Error ? exc.name : typeof exc;
    throw new CallRejected(new ValidationError(`malformed request: ${name}`), call);
  }
  return call;
}

function decode(call: Call, message: RequestMessage, now: number): void {
  const topic = message.topic;
  const target = validText(topic) ? parseTopic(topic) : null;
  if (target !== null) {
    call.service = target.service;
    call.function = target.function ?? "";
    call.version = target.version;
    call.envelope = target.function === null;
  }
  const correlation = Buffer.isBuffer(message.correlationData)
    ? message.correlationData
    : message.correlationData instanceof Uint8Array
      ? Buffer.from(message.correlationData)
      : null;
  if (correlation !== null && correlation.length > 0) {
    call.callId = callIdText(correlation);
    call.callIdGiven = true;
  }
  call.correlation = correlation;
  const propertyError = readProperties(call, message.userProperties, message.messageExpiryInterval, now);
  let replyProblem: string | null = null;
  if (typeof message.responseTopic === "string") replyProblem = setReplyTo(call, message.responseTopic);
  if (target === null) {
    throw new CallRejected(new NotFound(`not a service topic: ${JSON.stringify(String(topic).slice(0, 200))}`), call);
  }
  const payload = message.payload;
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new ValidationError(
      `payload of ${payload.byteLength} bytes is over the ${MAX_PAYLOAD_BYTES} byte limit`,
      { limit: MAX_PAYLOAD_BYTES, size: payload.byteLength },
    );
  }
  let data: unknown = null;
  let canonical = new WeakMap<object, string>();
  let rootText = "null";
  if (payload.byteLength > 0) {
    try {
      const parsed = parseJson(payload);
      data = parsed.value;
      canonical = parsed.canonical;
      rootText = parsed.text;
    } catch (exc) {
      if (!(exc instanceof JsonSyntaxError)) throw exc;
      if (call.envelope) refuseReply(call, replyProblem);
      throw new ValidationError(`payload is not valid JSON: ${exc.message}`);
    }
  }
  if (call.envelope) {
    replyProblem = readEnvelope(data, call, replyProblem);
  } else {
    call.params = data;
  }
  refuseReply(call, replyProblem);
  if (correlation !== null && correlation.length > MAX_CALL_ID_BYTES) throw callIdTooLong(correlation.length);
  if (propertyError !== null) throw propertyError;
  const params = call.params;
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw new ValidationError(`the input must be a JSON object, got ${jsonKind(params)}`, {
      errors: [{ path: "", message: "must be an object" }],
    });
  }
  call.canonical = call.envelope ? (canonical.get(params) ?? canonicalOf(params)) : rootText;
}

function readProperties(call: Call, userProperties: unknown, expiry: unknown, now: number): ValidationError | null {
  const headers: Record<string, string> = {};
  let deadline: number | null = null;
  let problem: ValidationError | null = null;
  if (userProperties !== null && typeof userProperties === "object") {
    for (const [key, raw] of Object.entries(userProperties as Record<string, unknown>)) {
      const values = Array.isArray(raw) ? raw : [raw];
      for (const value of values) {
        if (!(validText(key) && validText(value))) continue;
        if (key === PROP_DEADLINE) {
          try {
            const parsed = parseDeadline(value);
            deadline = deadline === null ? parsed : Math.min(deadline, parsed);
          } catch (exc) {
            problem = problem ?? (exc as ValidationError);
          }
          continue;
        }
        headers[key] = value;
      }
    }
  }
  checkTraceContext(headers);
  if (typeof expiry === "number" && Number.isInteger(expiry) && expiry > 0 && expiry <= MAX_EXPIRY_S) {
    const byExpiry = now + expiry * 1000;
    deadline = deadline === null ? byExpiry : Math.min(deadline, byExpiry);
  }
  call.headers = headers;
  call.deadline = deadline;
  return problem;
}

function setReplyTo(call: Call, topic: string): string | null {
  const problem = validText(topic) ? replyTopicProblem(topic) : "a reply topic must be valid UTF-8";
  call.replyTo = problem === null ? topic : null;
  if (problem === null) return null;
  const shown = topic.length <= 80 ? topic : topic.slice(0, 80) + "...";
  return `${JSON.stringify(shown)}: ${problem}`;
}

function refuseReply(call: Call, problem: string | null): void {
  if (problem !== null) throw new CallRejected(new ValidationError(`refused reply topic: ${problem}`), call);
}

function callIdTooLong(size: number): ValidationError {
  return new ValidationError(`a callId is at most ${MAX_CALL_ID_BYTES} bytes, got ${size}`, {
    limit: MAX_CALL_ID_BYTES,
    size,
  });
}

function envelopeString(data: Record<string, unknown>, key: string): string | null {
  const value = data[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") {
    throw new ValidationError(`the envelope field "${key}" must be a string, got ${jsonKind(value)}`);
  }
  return value;
}

function readEnvelope(data: unknown, call: Call, replyProblem: string | null): string | null {
  call.envelope = true;
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    refuseReply(call, replyProblem);
    throw new ValidationError("an envelope call must be a JSON object");
  }
  const env = data as Record<string, unknown>;
  const reply = env.replyTo;
  if (typeof reply === "string" && reply) {
    replyProblem = setReplyTo(call, reply);
  } else if (reply !== undefined && reply !== null && reply !== "") {
    call.replyTo = null;
    replyProblem = `replyTo must be a string, got ${jsonKind(reply)}`;
  }
  refuseReply(call, replyProblem);
  const messageId = envelopeString(env, "messageId");
  if (messageId !== null) {
    if (Buffer.byteLength(messageId, "utf8") > MAX_CALL_ID_BYTES) {
      throw new ValidationError(`a messageId is at most ${MAX_CALL_ID_BYTES} bytes`);
    }
    call.messageId = messageId;
  }
  const callId = envelopeString(env, "callId");
  if (callId) {
    const size = Buffer.byteLength(callId, "utf8");
    if (size > MAX_CALL_ID_BYTES) throw callIdTooLong(size);
    call.callId = callId;
    call.callIdGiven = true;
  }
  const headers = env.headers;
  if (typeof headers === "object" && headers !== null && !Array.isArray(headers)) {
    for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
      if (validText(k) && validText(v)) call.headers[k.toLowerCase()] = v;
    }
    checkTraceContext(call.headers);
  } else if (headers !== undefined && headers !== null) {
    throw new ValidationError(`the envelope field "headers" must be an object, got ${jsonKind(headers)}`);
  }
  const body = env.body;
  if (
    typeof body !== "object" ||
    body === null ||
    Array.isArray(body) ||
    typeof (body as Record<string, unknown>).function !== "string"
  ) {
    throw new ValidationError('an envelope call needs "body": {"function", "parameters"}');
  }
  const b = body as Record<string, unknown>;
  call.function = b.function as string;
  call.params = "parameters" in b ? b.parameters : {};
  return null;
}

/** Message Expiry of an answer: what is left of the caller's deadline (at least 1 s), or undefined. */
export function replyExpiry(deadline: number | null, now: number = Date.now()): number | undefined {
  if (deadline === null) return undefined;
  return Math.max(1, Math.min(MAX_EXPIRY_S, Math.trunc((deadline - now) / 1000) + 1));
}

/** The payload of the answer to `call`, from the body already serialized (stored answers replay as is). */
export function encodeResponse(call: Call, ok: boolean, bodyJson: string): string {
  if (!call.envelope) return bodyJson;
  return (
    `{"messageId":${JSON.stringify(randomBytes(16).toString("hex"))},"callId":${JSON.stringify(call.callId)},` +
    `"inReplyTo":${JSON.stringify(call.messageId)},"headers":{"content-type":"application/json",` +
    `"status":"${ok ? "ok" : "error"}"},"body":${bodyJson}}`
  );
}
