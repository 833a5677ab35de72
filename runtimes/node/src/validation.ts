/**
 * JSON Schema checks of inputs and outputs with ajv (draft 2020-12), compiled once when a service loads.
 *
 * Every `format` is an assertion, from the list in docs/wire-protocol.md; a schema that uses any other
 * format is refused at load (`UncheckedFormat`). Problems are reported like the Python runtime does:
 * `[{path, message}]`, the path as `/`-joined property names and indexes (`items/0/name`, `""` for the
 * input itself), messages in the words of Python's jsonschema for the common keywords, at most 20,
 * sorted by path then message.
 */

import { domainToASCII } from "node:url";

import Ajv2020 from "ajv/dist/2020";
import type { ErrorObject, ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { fullFormats } from "ajv-formats/dist/formats";

export const MAX_REPORTED_ERRORS = 20;

export const CHECKED_FORMATS: ReadonlySet<string> = new Set([
  "date",
  "date-time",
  "time",
  "duration",
  "email",
  "idn-email",
  "hostname",
  "idn-hostname",
  "ipv4",
  "ipv6",
  "uri",
  "uri-reference",
  "iri",
  "iri-reference",
  "uri-template",
  "uuid",
  "json-pointer",
  "relative-json-pointer",
  "regex",
]);

export class UncheckedFormat extends Error {}

export interface SchemaProblem {
  path: string;
  message: string;
}

export interface Checker {
  (value: unknown): SchemaProblem[];
}

type FormatCheck = (value: string) => boolean;

function asCheck(format: unknown): FormatCheck {
  if (format instanceof RegExp) return (value) => format.test(value);
  if (typeof format === "function") return format as FormatCheck;
  const spec = format as { validate: RegExp | FormatCheck };
  return asCheck(spec.validate);
}

const uriCheck = asCheck(fullFormats.uri);
const uriReferenceCheck = asCheck(fullFormats["uri-reference"]);
const hostnameCheck = asCheck(fullFormats.hostname);
const emailCheck = asCheck(fullFormats.email);

/** Non-ASCII characters percent-encoded: an IRI read as the URI it maps to (RFC 3987, section 3.1). */
function iriAsUri(value: string): string | null {
  try {
    return value.replace(/[^\x00-\x7f]+/gu, (chars) => encodeURIComponent(chars));
  } catch {
    return null; // a lone surrogate
  }
}

function idnHostname(value: string): boolean {
  if (value.length === 0 || value.endsWith(".") && value.length === 1) return false;
  if (/^[\x00-\x7f]*$/.test(value)) return hostnameCheck(value);
  const ascii = domainToASCII(value);
  return ascii !== "" && hostnameCheck(ascii);
}

const extraFormats: Record<string, FormatCheck> = {
  iri: (value) => {
    const uri = iriAsUri(value);
    return uri !== null && uriCheck(uri);
  },
  "iri-reference": (value) => {
    const uri = iriAsUri(value);
    return uri !== null && uriReferenceCheck(uri);
  },
  "idn-hostname": idnHostname,
  "idn-email": (value) => {
    const at = value.lastIndexOf("@");
    if (at <= 0 || at === value.length - 1) return false;
    const local = value.slice(0, at);
    const domain = value.slice(at + 1);
    if (/[\s@"(),:;<>[\\\]]/u.test(local) || local.startsWith(".") || local.endsWith(".") || local.includes("..")) {
      return false;
    }
    const asciiDomain = /^[\x00-\x7f]*$/.test(domain) ? domain : domainToASCII(domain);
    return asciiDomain !== "" && (emailCheck("x@" + asciiDomain) || /^\[.*\]$/.test(domain));
  },
};

const SKIPPED_KEYS = new Set(["enum", "const", "default", "examples"]);

/** The `format` values a schema uses (not looking inside enum, const, default or examples). */
export function formatsUsed(schema: unknown, found: Set<string> = new Set()): Set<string> {
  if (Array.isArray(schema)) {
    for (const item of schema) formatsUsed(item, found);
  } else if (schema !== null && typeof schema === "object") {
    for (const [key, value] of Object.entries(schema as Record<string, unknown>)) {
      if (key === "format" && typeof value === "string") found.add(value);
      else if (key === "properties" && value !== null && typeof value === "object" && !Array.isArray(value)) {
        for (const sub of Object.values(value as Record<string, unknown>)) formatsUsed(sub, found);
      } else if (!SKIPPED_KEYS.has(key)) formatsUsed(value, found);
    }
  }
  return found;
}

function newAjv(useDefaults: boolean): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false, useDefaults, validateFormats: true });
  addFormats(ajv, { mode: "full" });
  for (const [name, check] of Object.entries(extraFormats)) ajv.addFormat(name, check);
  return ajv;
}

/** A checker for `schema`; `where` names it in errors. `fillDefaults` fills in `default`s (inputs). */
export function compileSchema(schema: unknown, where: string, fillDefaults = false): Checker {
  const unchecked = [...formatsUsed(schema)].filter((f) => !CHECKED_FORMATS.has(f)).sort();
  if (unchecked.length > 0) {
    throw new UncheckedFormat(`${where} uses formats this runtime cannot check: ${unchecked.join(", ")}`);
  }
  let validate: ValidateFunction;
  try {
    validate = newAjv(fillDefaults).compile(schema as object);
  } catch (exc) {
    throw new UncheckedFormat(`${where} cannot be compiled: ${(exc as Error).message}`);
  }
  return (value: unknown) => (validate(value) ? [] : problemsOf(validate.errors ?? [], value));
}

function pathOf(instancePath: string): string {
  if (instancePath === "") return "";
  return instancePath
    .slice(1)
    .split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .join("/");
}

function at(root: unknown, instancePath: string): unknown {
  let node = root;
  if (instancePath === "") return node;
  for (const raw of instancePath.slice(1).split("/")) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** A value as Python's repr shows it (what jsonschema's messages quote). */
export function pyRepr(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(value);
  if (typeof value === "string") {
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
    const body = value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
    return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote;
  }
  if (depth > 3) return "...";
  if (Array.isArray(value)) return "[" + value.map((v) => pyRepr(v, depth + 1)).join(", ") + "]";
  return (
    "{" +
    Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => pyRepr(k) + ": " + pyRepr(v, depth + 1))
      .join(", ") +
    "}"
  );
}

function messageOf(error: ErrorObject, instance: unknown): string {
  const p = error.params as Record<string, unknown>;
  const shown = () => pyRepr(instance);
  switch (error.keyword) {
    case "required":
      return `${pyRepr(p.missingProperty)} is a required property`;
    case "additionalProperties":
      return `Additional properties are not allowed (${pyRepr(p.additionalProperty)} was unexpected)`;
    case "type": {
      const types = String(p.type).split(",");
      return types.length === 1
        ? `${shown()} is not of type ${pyRepr(types[0])}`
        : `${shown()} is not of type ${types.map((t) => pyRepr(t)).join(", ")}`;
    }
    case "enum":
      return `${shown()} is not one of ${pyRepr(p.allowedValues)}`;
    case "const":
      return `${pyRepr(p.allowedValue)} was expected`;
    case "minLength":
      return `${shown()} is too short`;
    case "maxLength":
      return `${shown()} is too long`;
    case "minItems":
      return p.limit === 1 ? `${shown()} should be non-empty` : `${shown()} is too short`;
    case "maxItems":
      return `${shown()} is too long`;
    case "minimum":
      return `${shown()} is less than the minimum of ${p.limit}`;
    case "maximum":
      return `${shown()} is greater than the maximum of ${p.limit}`;
    case "exclusiveMinimum":
      return `${shown()} is less than or equal to the minimum of ${p.limit}`;
    case "exclusiveMaximum":
      return `${shown()} is greater than or equal to the maximum of ${p.limit}`;
    case "pattern":
      return `${shown()} does not match ${pyRepr(p.pattern)}`;
    case "format":
      return `${shown()} is not a ${pyRepr(p.format)}`;
    case "multipleOf":
      return `${shown()} is not a multiple of ${p.multipleOf}`;
    case "uniqueItems":
      return `${shown()} has non-unique elements`;
    default:
      return error.message ?? "is not valid";
  }
}

function problemsOf(errors: ErrorObject[], root: unknown): SchemaProblem[] {
  const found: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    const problem = { path: pathOf(error.instancePath), message: messageOf(error, at(root, error.instancePath)) };
    const key = problem.path + "\u0000" + problem.message;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push(problem);
    if (found.length >= MAX_REPORTED_ERRORS) break;
  }
  return found.sort((a, b) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : a.message < b.message ? -1 : a.message > b.message ? 1 : 0,
  );
}
