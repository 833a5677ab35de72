/**
 * Loading an unpacked app layer: `generated/interface.json` (written by `dormant generate`), then the
 * compiled service module it names (`entry`, CommonJS, relative to the app dir), whose `@service` class
 * is instantiated once. Functions map to methods by the interface's `method`.
 *
 * The app's `require("@dormant/runtime")` resolves to this very package wherever the app dir lives, so
 * its decorators fill the registry the runtime reads.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import Module from "node:module";

import { runtimePlatform } from "./platform";
import { registry } from "./registry";

export const BASE_RUNTIME = "dormant-node:1";
export const DEFAULT_ENTRY = "dist/service.js";
export const MIN_TIMEOUT_S = 1;
export const MAX_TIMEOUT_S = 900;
const SERVICE_NAME = /^[a-z0-9-]{1,64}$/;
const FUNCTION_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

export type AuthMode = "required" | "optional" | "off";

export class LoadError extends Error {}

export interface FunctionSpec {
  name: string;
  method: string;
  input: unknown;
  output: unknown;
  /** Seconds. */
  timeout: number;
  roles: string[];
}

export interface ServiceSpec {
  name: string;
  auth: AuthMode;
  functions: Map<string, FunctionSpec>;
  handler: Record<string, unknown>;
  appDir: string;
}

const PACKAGE_NAME = "@dormant/runtime";
let hooked = false;

/** Make `require("@dormant/runtime")` (and its subpaths) resolve to this package from anywhere. */
export function hookRuntimeResolution(): void {
  if (hooked) return;
  hooked = true;
  const packageRoot = path.resolve(__dirname, "..");
  const mod = Module as unknown as {
    _resolveFilename: (request: string, parent: unknown, isMain: boolean, options?: unknown) => string;
  };
  const original = mod._resolveFilename;
  mod._resolveFilename = function (request, parent, isMain, options) {
    if (request === PACKAGE_NAME) return path.join(__dirname, "index.js");
    if (request.startsWith(PACKAGE_NAME + "/")) {
      return original.call(this, path.join(packageRoot, request.slice(PACKAGE_NAME.length + 1)), parent, isMain, options);
    }
    return original.call(this, request, parent, isMain, options);
  };
}

function readInterface(appDir: string): Record<string, unknown> {
  const file = path.join(appDir, "generated", "interface.json");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (exc) {
    throw new LoadError(`${appDir} has no generated/interface.json (run dormant generate): ${(exc as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (exc) {
    throw new LoadError(`${file} is not JSON: ${(exc as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new LoadError(`${file} is not an object`);
  return doc as Record<string, unknown>;
}

/** Read the interface, import the entry module and make the handler instance. */
export function loadService(appDir: string): ServiceSpec {
  appDir = path.resolve(appDir);
  const doc = readInterface(appDir);
  const name = doc.service;
  if (typeof name !== "string" || !SERVICE_NAME.test(name)) {
    throw new LoadError(`the interface names no valid service: ${JSON.stringify(name)}`);
  }
  const base = doc.baseRuntime;
  if (base !== undefined && base !== BASE_RUNTIME) {
    throw new LoadError(`${name} is built for the base runtime ${JSON.stringify(base)}, not ${BASE_RUNTIME}`);
  }
  const auth = doc.auth ?? "required";
  if (auth !== "required" && auth !== "optional" && auth !== "off") {
    throw new LoadError(`the interface's auth must be required, optional or off, not ${JSON.stringify(auth)}`);
  }
  const entry = doc.entry ?? DEFAULT_ENTRY;
  if (typeof entry !== "string" || path.isAbsolute(entry) || entry.split(/[\\/]/).includes("..")) {
    throw new LoadError(`the interface's entry must be a path inside the app dir, not ${JSON.stringify(entry)}`);
  }
  const declared = doc.functions;
  if (declared === null || typeof declared !== "object" || Array.isArray(declared)) {
    throw new LoadError("the interface has no functions object");
  }
  hookRuntimeResolution();
  const entryPath = path.join(appDir, entry);
  try {
    require(entryPath);
  } catch (exc) {
    const err = exc as Error;
    throw new LoadError(`importing ${entry} failed: ${err.name}: ${err.message}`);
  }
  const services = registry().services;
  const mine = services.filter((s) => s.name === name);
  const found = mine.length > 0 ? mine[mine.length - 1] : undefined;
  if (found === undefined) {
    const names = services.map((s) => s.name);
    throw new LoadError(
      `${entry} declares no @service("${name}") class` + (names.length ? ` (found: ${names.join(", ")})` : ""),
    );
  }
  let handler: Record<string, unknown>;
  try {
    handler = new found.cls(runtimePlatform.interfaces) as Record<string, unknown>;
  } catch (exc) {
    const err = exc as Error;
    throw new LoadError(`constructing ${found.cls.name} failed: ${err.name}: ${err.message}`);
  }
  const functions = new Map<string, FunctionSpec>();
  for (const [fnName, raw] of Object.entries(declared as Record<string, unknown>)) {
    if (!FUNCTION_NAME.test(fnName) || /^v[0-9]+$/.test(fnName)) throw new LoadError(`not a function name: ${fnName}`);
    const spec = raw as Record<string, unknown>;
    const method = typeof spec.method === "string" ? spec.method : fnName;
    if (typeof handler[method] !== "function") {
      throw new LoadError(`${found.cls.name} has no method ${method} for the function ${fnName}`);
    }
    const timeout = spec.timeout ?? 30;
    if (typeof timeout !== "number" || !(timeout >= MIN_TIMEOUT_S && timeout <= MAX_TIMEOUT_S)) {
      throw new LoadError(`the timeout of ${fnName} must be ${MIN_TIMEOUT_S} to ${MAX_TIMEOUT_S} seconds`);
    }
    const roles = spec.roles ?? [];
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === "string")) {
      throw new LoadError(`the roles of ${fnName} must be a list of names`);
    }
    functions.set(fnName, {
      name: fnName,
      method,
      input: spec.input ?? { type: "object" },
      output: spec.output ?? {},
      timeout,
      roles: roles as string[],
    });
  }
  return { name, auth, functions, handler, appDir };
}
