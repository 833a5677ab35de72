/**
 * The SDK's decorators and the registry they fill: `@service(name)` on a handler class, `@fn(name, opts)`
 * on its methods (TypeScript 5 standard decorators).
 *
 * The registry lives on `globalThis` under a registered symbol, so a service module that resolved its own
 * copy of `@dormant/runtime` still registers where the runtime looks.
 */

import type { Platform } from "./platform";

export interface FunctionOptions {
  /** Seconds the function may run (1 to 900; the interface document, written by codegen, is what counts). */
  timeout?: number;
  /** Roles of which the caller must hold one. */
  roles?: string[];
}

export interface DeclaredFunction {
  name: string;
  method: string;
  options: FunctionOptions;
}

/** How a service treats callers' bearer tokens (`required` by default), as `dormant generate` reads it. */
export interface ServiceOptions {
  auth?: "required" | "optional" | "off";
}

export interface DeclaredService {
  name: string;
  options: ServiceOptions;
  /** Constructed once, with the platform interfaces (a constructor may ignore them). */
  cls: new (platform: Platform) => object;
  functions: DeclaredFunction[];
}

interface Registry {
  services: DeclaredService[];
}

const KEY = Symbol.for("dormant.runtime.registry");

export function registry(): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>;
  let found = holder[KEY];
  if (found === undefined) {
    found = { services: [] };
    holder[KEY] = found;
  }
  return found;
}

type Method = (this: unknown, input: never, ctx: never) => Promise<unknown>;

/** Mark a method as the function `name` of its service. */
export function fn(name: string, opts: FunctionOptions = {}) {
  return function <T extends Method>(target: T, context: ClassMethodDecoratorContext): T {
    if (context.kind !== "method" || context.static || context.private) {
      throw new TypeError(`@fn("${name}") goes on a public instance method`);
    }
    const declared = context.metadata as Record<string, unknown> | undefined;
    const entry: DeclaredFunction = { name, method: String(context.name), options: { ...opts } };
    if (declared !== undefined) {
      const list = (declared.dormantFunctions as DeclaredFunction[] | undefined) ?? [];
      list.push(entry);
      declared.dormantFunctions = list;
    } else {
      pending.push(entry);
    }
    return target;
  };
}

const pending: DeclaredFunction[] = [];

/** Mark a class as the handler class of the service `name` (the runtime makes one instance of it, passing
 * the platform interfaces to its constructor: `constructor(platform: Platform)`, or none). */
export function service(name: string, opts: ServiceOptions = {}) {
  return function <C extends new (platform: Platform) => object>(cls: C, context: ClassDecoratorContext<C>): C {
    if (context.kind !== "class") throw new TypeError(`@service("${name}") goes on a class`);
    const meta = context.metadata as Record<string, unknown> | undefined;
    const functions = [...(((meta?.dormantFunctions as DeclaredFunction[] | undefined) ?? [])), ...pending.splice(0)];
    registry().services.push({ name, options: { ...opts }, cls, functions });
    return cls;
  };
}
