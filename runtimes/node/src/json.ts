/**
 * Reading request payloads: JSON parsed as the Python runtime parses it (orjson), together with the
 * canonical form of every object and array in it, from which a call's input fingerprint is computed.
 *
 * The canonical form is what `orjson.dumps(value, option=OPT_SORT_KEYS)` writes for the value Python
 * reads (docs/delivery.md): keys sorted by code point at every level, no whitespace, integers (within
 * the 64-bit range) as written, other numbers as floats in orjson's notation (`1.0`, `1e+16`,
 * `0.00001`, `1.5e-6`). `JSON.parse` would lose the difference between `1` and `1.0`, which are
 * different inputs, so numbers are read here from their text. Like orjson, this refuses invalid UTF-8,
 * numbers out of the double range, lone surrogates and nesting deeper than 1024 levels.
 */

import { createHash } from "node:crypto";

export class JsonSyntaxError extends Error {}

export interface Parsed {
  value: unknown;
  /** The canonical JSON text of every object and array of `value`. */
  canonical: WeakMap<object, string>;
  /** The canonical JSON text of `value` itself. */
  text: string;
}

const MAX_DEPTH = 1024;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parse `data` (bytes or text); throws `JsonSyntaxError` for anything orjson would refuse. */
export function parseJson(data: Uint8Array | string): Parsed {
  let text: string;
  if (typeof data === "string") {
    text = data;
  } else {
    try {
      text = utf8.decode(data);
    } catch {
      throw new JsonSyntaxError("the payload is not valid UTF-8");
    }
  }
  return new Parser(text).parseDocument();
}

/** The sha256 of a canonical JSON text, plus the caller's subject when there is one (as catalog/calls.py). */
export function fingerprintOf(canonical: string, caller: string | null): Buffer {
  const hash = createHash("sha256").update(canonical, "utf8");
  if (caller !== null) {
    hash.update("\u0000caller:", "utf8").update(caller, "utf8");
  }
  return hash.digest();
}

/** Canonical JSON of a value built in JavaScript (numbers that are integers are written as integers). */
export function canonicalOf(value: unknown): string {
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new JsonSyntaxError("a number is not finite");
    return Number.isInteger(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER ? String(value) : floatText(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalOf).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value as object).sort(compareCodePoints);
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalOf((value as Record<string, unknown>)[k])).join(",") + "}";
  }
  throw new JsonSyntaxError(`not a JSON value: ${typeof value}`);
}

/** Order two strings by code point (what sorting their UTF-8 bytes gives), not by UTF-16 unit. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const xs = x >= 0xd800 && x <= 0xdfff;
      const ys = y >= 0xd800 && y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1; // a surrogate (astral code point) sorts after every BMP character
      return x - y;
    }
  }
  return a.length - b.length;
}

/** A double in orjson's notation (the shortest digits that read back to the same double). */
export function floatText(value: number): string {
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const sign = value < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(value).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const n = digits.length;
  const kk = Number(exponent) + 1; // the decimal point sits after kk digits
  let body: string;
  if (kk > 0 && kk <= 16) {
    body = kk >= n ? digits + "0".repeat(kk - n) + ".0" : digits.slice(0, kk) + "." + digits.slice(kk);
  } else if (kk > -5 && kk <= 0) {
    body = "0." + "0".repeat(-kk) + digits;
  } else {
    const e = kk - 1;
    body = digits[0] + (n > 1 ? "." + digits.slice(1) : "") + "e" + (e > 0 ? "+" : "-") + Math.abs(e);
  }
  return sign + body;
}

class Parser {
  private pos = 0;
  private readonly canonical = new WeakMap<object, string>();

  constructor(private readonly text: string) {}

  parseDocument(): Parsed {
    this.skipSpace();
    const [value, text] = this.parseValue(0);
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail("unexpected content after the JSON value");
    return { value, canonical: this.canonical, text };
  }

  private fail(message: string): never {
    throw new JsonSyntaxError(`${message} at character ${this.pos}`);
  }

  private skipSpace(): void {
    const t = this.text;
    let p = this.pos;
    while (p < t.length) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  private parseValue(depth: number): [unknown, string] {
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.parseObject(depth + 1);
      case "[":
        return this.parseArray(depth + 1);
      case '"': {
        const s = this.parseString();
        return [s, JSON.stringify(s)];
      }
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      default:
        return this.parseNumber();
    }
  }

  private literal(word: string, value: unknown): [unknown, string] {
    if (!this.text.startsWith(word, this.pos)) this.fail("unexpected character");
    this.pos += word.length;
    return [value, word];
  }

  private parseNumber(): [unknown, string] {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) this.fail("unexpected character");
    const token = match[0];
    this.pos += token.length;
    if (match[1] === undefined && match[2] === undefined) {
      const big = BigInt(token);
      if (big >= I64_MIN && big <= U64_MAX) return [Number(token), big.toString()];
    }
    const value = Number(token);
    if (!Number.isFinite(value)) this.fail("number is infinity when parsed as double");
    return [value, floatText(value)];
  }

  private parseString(): string {
    const t = this.text;
    const start = this.pos;
    let p = start + 1;
    let escaped = false;
    for (;;) {
      if (p >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(p);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        p += 2;
        continue;
      }
      if (c < 0x20) {
        this.pos = p;
        this.fail("control character in a string");
      }
      p++;
    }
    this.pos = p + 1;
    let value: string;
    if (escaped) {
      try {
        value = JSON.parse(t.slice(start, p + 1)) as string;
      } catch {
        this.pos = start;
        this.fail("invalid escape in a string");
      }
    } else {
      value = t.slice(start + 1, p);
    }
    if (LONE_SURROGATE.test(value)) {
      this.pos = start;
      this.fail("lone surrogate in a string");
    }
    return value;
  }

  private parseArray(depth: number): [unknown, string] {
    if (depth > MAX_DEPTH) this.fail("nesting is deeper than 1024 levels");
    this.pos++;
    const values: unknown[] = [];
    const parts: string[] = [];
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
    } else {
      for (;;) {
        this.skipSpace();
        const [v, canon] = this.parseValue(depth);
        values.push(v);
        parts.push(canon);
        this.skipSpace();
        const c = this.text[this.pos++];
        if (c === "]") break;
        if (c !== ",") {
          this.pos--;
          this.fail("expected ',' or ']'");
        }
      }
    }
    const canon = "[" + parts.join(",") + "]";
    this.canonical.set(values, canon);
    return [values, canon];
  }

  private parseObject(depth: number): [unknown, string] {
    if (depth > MAX_DEPTH) this.fail("nesting is deeper than 1024 levels");
    this.pos++;
    const obj: Record<string, unknown> = {};
    const members = new Map<string, string>();
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
    } else {
      for (;;) {
        this.skipSpace();
        if (this.text[this.pos] !== '"') this.fail("expected a property name");
        const key = this.parseString();
        this.skipSpace();
        if (this.text[this.pos++] !== ":") {
          this.pos--;
          this.fail("expected ':'");
        }
        this.skipSpace();
        const [v, canon] = this.parseValue(depth);
        if (key === "__proto__") {
          Object.defineProperty(obj, key, { value: v, writable: true, enumerable: true, configurable: true });
        } else {
          obj[key] = v;
        }
        members.set(key, canon);
        this.skipSpace();
        const c = this.text[this.pos++];
        if (c === "}") break;
        if (c !== ",") {
          this.pos--;
          this.fail("expected ',' or '}'");
        }
      }
    }
    const keys = [...members.keys()].sort(compareCodePoints);
    const canon = "{" + keys.map((k) => JSON.stringify(k) + ":" + members.get(k)).join(",") + "}";
    this.canonical.set(obj, canon);
    return [obj, canon];
  }
}
