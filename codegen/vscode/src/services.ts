/**
 * The services of a workspace and their functions, from the files `dormant generate` reads and writes:
 * a service directory holds `schemas/*.json`, and once generated `generated/interface.json` (its name,
 * its functions and their input schemas). No I/O here: the extension finds the files and reads them.
 */

export interface FunctionInfo {
  name: string;
  /** The function's input JSON Schema, as in interface.json. */
  input: unknown;
}

export interface ServiceInfo {
  /** The service directory, relative to the workspace folder, with forward slashes ("." for the root). */
  dir: string;
  /** The service's name from interface.json; undefined until it is generated. */
  name: string | undefined;
  functions: FunctionInfo[];
}

function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "." : path.slice(0, cut) || "/";
}

function normal(path: string): string {
  return path.replace(/\\/g, "/").replace(/^\.\//, "");
}

/**
 * The service directory a workspace file belongs to, for `DIR/schemas/X.json` and
 * `DIR/generated/interface.json`; undefined for any other file.
 */
export function serviceDirOf(relativePath: string): string | undefined {
  const path = normal(relativePath);
  const parts = path.split("/");
  if (parts.includes("node_modules")) {
    return undefined;
  }
  if (/(^|\/)generated\/interface\.json$/.test(path)) {
    return parentOf(parentOf(path));
  }
  if (/(^|\/)schemas\/[^/]+\.json$/.test(path) && !parts.includes("generated")) {
    return parentOf(parentOf(path));
  }
  return undefined;
}

/** Reads an interface.json text: the service name and functions, or undefined when it is not one. */
export function parseInterface(text: string): { name: string; functions: FunctionInfo[] } | undefined {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof data !== "object" || data === null) {
    return undefined;
  }
  const raw = data as Record<string, unknown>;
  if (typeof raw.service !== "string" || typeof raw.functions !== "object" || raw.functions === null) {
    return undefined;
  }
  const functions = Object.entries(raw.functions as Record<string, unknown>)
    .map(([name, spec]) => ({
      name,
      input: typeof spec === "object" && spec !== null ? (spec as Record<string, unknown>).input : undefined,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { name: raw.service, functions };
}

/**
 * The services found among `files` (workspace-relative paths; `interfaces` maps an
 * `.../generated/interface.json` path to its text), sorted by directory.
 */
export function discoverServices(files: string[], interfaces: Map<string, string>): ServiceInfo[] {
  const byDir = new Map<string, ServiceInfo>();
  for (const file of files) {
    const dir = serviceDirOf(file);
    if (dir !== undefined && !byDir.has(dir)) {
      byDir.set(dir, { dir, name: undefined, functions: [] });
    }
  }
  for (const [file, text] of interfaces) {
    const dir = serviceDirOf(file);
    const parsed = parseInterface(text);
    if (dir === undefined || parsed === undefined) {
      continue;
    }
    byDir.set(dir, { dir, name: parsed.name, functions: parsed.functions });
  }
  return [...byDir.values()].sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
}

/**
 * A small input that looks valid for `schema` (as `dormant dev`'s banner makes one): required
 * properties only, strings "Ann" (an email for `format: email`), numbers 1 (or the minimum), booleans
 * true, lists empty; a `const` or the first `enum` value when there is one.
 */
export function sampleInput(schema: unknown): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    return {};
  }
  const s = schema as Record<string, unknown>;
  if ("const" in s) {
    return s.const;
  }
  if (Array.isArray(s.enum) && s.enum.length > 0) {
    return s.enum[0];
  }
  const kind = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (kind === "object" || "properties" in s) {
    const properties = (typeof s.properties === "object" && s.properties !== null ? s.properties : {}) as Record<
      string,
      unknown
    >;
    const required = Array.isArray(s.required) ? s.required.filter((n): n is string => typeof n === "string") : [];
    return Object.fromEntries(required.map((name) => [name, sampleInput(properties[name] ?? {})]));
  }
  if (kind === "string") {
    return s.format === "email" ? "ann@example.com" : "Ann";
  }
  if (kind === "integer" || kind === "number") {
    return typeof s.minimum === "number" ? Math.max(1, s.minimum) : 1;
  }
  if (kind === "boolean") {
    return true;
  }
  if (kind === "array") {
    return [];
  }
  return {};
}

export type InputCheck = { ok: true; value: unknown; text: string } | { ok: false; error: string };

/**
 * Checks a call input typed by the user: it must be JSON (`dormant call` sends it as is). On success
 * `text` is the compact JSON passed to `dormant call`; on failure `error` says where it breaks.
 */
export function checkCallInput(text: string): InputCheck {
  const trimmed = text.trim();
  if (trimmed === "") {
    return { ok: true, value: {}, text: "{}" };
  }
  try {
    const value: unknown = JSON.parse(trimmed);
    return { ok: true, value, text: JSON.stringify(value) };
  } catch (error) {
    return { ok: false, error: `not valid JSON: ${(error as Error).message}` };
  }
}

/** Checks a call target `SERVICE.FUNCTION`; the error message when it is not one. */
export function checkTarget(target: string): string | undefined {
  // Service names: decorators.SERVICE_NAME_RE; function names: FUNCTION_NAME_RE (dormant/decorators.py).
  return /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\.[A-Za-z][A-Za-z0-9_]*$/.test(target)
    ? undefined
    : `"${target}" is not SERVICE.FUNCTION (e.g. greeter.greet)`;
}
