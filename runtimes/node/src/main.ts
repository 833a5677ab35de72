/**
 * Entry point of the Node base runtime: `node dist/main.js` (sidecar-controlled: commands on stdin,
 * events on `DORMANT_CONTROL_FD`) or `node dist/main.js --app-dir DIR` (standalone), with the options
 * of `python -m dormant_runtime` that apply.
 */

import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { parseArgs } from "node:util";

import { CallAuthenticator } from "./authn";
import { brokerOptions, DEFAULT_BROKER_URL, redactUrl } from "./broker";
import { CallStore, DEFAULT_LEASE_S } from "./calls";
import { type Command, EventChannel, type LoadCommand, readCommands } from "./control";
import { Deduplicator } from "./dedup";
import { Dispatcher } from "./dispatcher";
import { hookRuntimeResolution, loadService } from "./loader";
import { MemoryLimit } from "./limits";
import { log, setLogService } from "./logger";
import { DEFAULT_MAX_IN_FLIGHT, Server, sleep } from "./server";
import { runtimePlatform } from "./platform";
import { CallStats } from "./stats";
import { statsTopic } from "./wire";

const CONNECTION_POLL_MS = 500;
const DEFAULT_CATALOG_URL = "postgresql://127.0.0.1:5432/dormant";

interface Args {
  appDir: string | null;
  version: number;
  live: boolean;
  brokerUrl: string | null;
  maxInFlight: number;
  generation: number | null;
  maxConcurrency: number | null;
  memoryMb: number | null;
  slot: number | null;
  noDedup: boolean;
  drainTimeoutS: number;
}

const USAGE = `usage: node dist/main.js [--app-dir DIR] [--version N] [--not-live] [--broker-url URL]
  [--max-in-flight N] [--generation N] [--max-concurrency N] [--slot N] [--no-dedup] [--drain-timeout S]`;

function integer(value: string | undefined, name: string, fallback: number | null, min = 0): number | null {
  if (value === undefined) return fallback;
  if (!/^-?[0-9]+$/.test(value) || Number(value) < min) throw new Error(`${name} must be a whole number >= ${min}, got ${value}`);
  return Number(value);
}

export function parseCli(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    options: {
      "app-dir": { type: "string" },
      version: { type: "string" },
      "not-live": { type: "boolean" },
      "broker-url": { type: "string" },
      "max-in-flight": { type: "string" },
      generation: { type: "string" },
      "memory-mb": { type: "string" },
      "max-concurrency": { type: "string" },
      slot: { type: "string" },
      "no-dedup": { type: "boolean" },
      "drain-timeout": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  const drain = values["drain-timeout"] ?? "30";
  if (!/^[0-9]+(\.[0-9]+)?$/.test(drain)) throw new Error(`--drain-timeout must be seconds, got ${drain}`);
  return {
    appDir: values["app-dir"] ?? null,
    version: integer(values.version, "--version", 1, 1)!,
    live: !values["not-live"],
    brokerUrl: values["broker-url"] ?? null,
    maxInFlight: integer(values["max-in-flight"], "--max-in-flight", DEFAULT_MAX_IN_FLIGHT, 1)!,
    generation: integer(values.generation, "--generation", null, 1),
    memoryMb: integer(values["memory-mb"], "--memory-mb", null, 1),
    maxConcurrency: integer(values["max-concurrency"], "--max-concurrency", null, 1),
    slot: integer(values.slot, "--slot", null, 0),
    noDedup: Boolean(values["no-dedup"]),
    drainTimeoutS: Number(drain),
  };
}

/** The MQTT client id, exactly as `client_id_for` in the Python runtime's __main__. */
export function clientIdFor(
  service: string,
  version: number,
  slot: number | null,
  podId: string,
  live = true,
  generation: number | null = null,
): string {
  const where = slot !== null ? `s${slot}` : podId;
  const suffix = (generation === null ? "" : `-g${generation}`) + (live ? "" : "-vonly");
  return `dormant-${service}-v${version}-${where}${suffix}`;
}

interface Target {
  appDir: string;
  version: number;
  live: boolean;
  slot: number | null;
}

async function serve(target: Target, args: Args, events: EventChannel, stop: Promise<void>, loadReceived: number): Promise<number> {
  const brokerUrl = args.brokerUrl ?? process.env.DORMANT_BROKER_URL ?? DEFAULT_BROKER_URL;
  const catalogUrl = process.env.DORMANT_CATALOG_URL ?? DEFAULT_CATALOG_URL;
  let server: Server;
  let dedup: Deduplicator | null = null;
  let podId: string;
  let dispatcher: Dispatcher;
  let clientId: string;
  let authenticator: CallAuthenticator;
  try {
    // Before the service's modules load: they count against the limit too.
    const memory = args.memoryMb !== null ? new MemoryLimit(args.memoryMb) : null;
    const spec = loadService(target.appDir);
    setLogService(spec.name, target.version);
    podId = process.env.DORMANT_POD_ID || randomBytes(4).toString("hex");
    clientId = clientIdFor(spec.name, target.version, target.slot, podId, target.live, args.generation);
    dispatcher = new Dispatcher(spec, target.version);
    if (memory !== null) {
      dispatcher.memory = memory;
      memory.start();
      log.info(`memory limit: ${memory.memoryMb} MB beyond what the runtime holds`);
    }
    authenticator = CallAuthenticator.fromEnv(spec.auth);
    const options = brokerOptions(brokerUrl);
    if (!args.noDedup) {
      const owner = `${clientId}/${process.pid}/${randomBytes(3).toString("hex")}`;
      const leaseS = Number(process.env.DORMANT_CALL_LEASE_S ?? DEFAULT_LEASE_S);
      if (!(leaseS > 0)) throw new Error(`DORMANT_CALL_LEASE_S must be a positive number of seconds`);
      const store = new CallStore(catalogUrl, { appName: spec.name, owner, version: target.version, leaseS });
      dedup = new Deduplicator(store);
      // The DataStore writes in the call's transaction on the same database, committed with the stored answer.
      runtimePlatform.useDatabase(catalogUrl);
      try {
        await dedup.start();
      } catch (exc) {
        const message = `cannot reach the call de-duplication store: ${(exc as Error).message}`;
        events.emit("failed", { error: message });
        log.error(message);
        return 1;
      }
    }
    const stats = new CallStats();
    server = new Server(dispatcher, {
      brokerOptions: options,
      version: target.version,
      live: target.live,
      clientId,
      dedup,
      maxInFlight: args.maxInFlight,
      stats,
      authenticator,
      concurrencyLimit: args.maxConcurrency,
    });
    stats.started = loadReceived / 1000;
    stats.inFlight = () => server.inFlight;
    stats.declared = new Set(spec.functions.keys());
    log.info(`connecting to ${redactUrl(brokerUrl)} as ${clientId}`);
    server.start();
    const ready = await Promise.race([server.ready.then(() => "ready" as const), stop.then(() => "stop" as const)]);
    let publishing: NodeJS.Timeout | null = null;
    let watching: NodeJS.Timeout | null = null;
    if (ready === "ready") {
      stats.initSeconds = Math.round(Date.now() - loadReceived) / 1000;
      events.emit("ready", { service: spec.name, version: target.version });
      const topic = statsTopic(spec.name, target.version, podId);
      publishing = setInterval(() => {
        const client = (server as unknown as { client: import("mqtt").MqttClient | null }).client;
        const window = stats.take(spec.name, target.version, podId);
        if (client !== null && client.connected) client.publish(topic, JSON.stringify(window), { qos: 0 });
      }, 1000);
      let connected = true;
      watching = setInterval(() => {
        const now = server.connected && !server.replaced;
        if (now !== connected) {
          connected = now;
          events.emit("connection", { connected: now });
        }
      }, CONNECTION_POLL_MS);
    }
    await stop;
    if (watching !== null) clearInterval(watching);
    const left = await server.drain(args.drainTimeoutS * 1000);
    if (publishing !== null) clearInterval(publishing);
    if (dedup !== null) await dedup.close().catch(() => undefined);
    await runtimePlatform.close();
    events.emit("drained", { cut_off: left });
    return 0;
  } catch (exc) {
    const err = exc as Error;
    const message = err.name === "LoadError" || err.constructor.name === "LoadError" || err.constructor.name === "UncheckedFormat"
      ? err.message
      : `${err.name}: ${err.message}`;
    events.emit("failed", { error: message });
    log.error(message, err.constructor.name === "LoadError" ? undefined : { exception: err.stack });
    if (dedup !== null) await dedup.close().catch(() => undefined);
    return 1;
  }
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseCli(argv);
  } catch (exc) {
    process.stderr.write(`${(exc as Error).message}\n${USAGE}\n`);
    return 2;
  }
  hookRuntimeResolution();
  const events = EventChannel.fromEnv();
  let stopNow!: () => void;
  const stop = new Promise<void>((resolve) => (stopNow = resolve));
  process.on("SIGTERM", () => stopNow());
  process.on("SIGINT", () => stopNow());
  if (args.appDir !== null) {
    return serve({ appDir: args.appDir, version: args.version, live: args.live, slot: args.slot }, args, events, stop, Date.now());
  }
  const load = await new Promise<LoadCommand | null>((resolve) => {
    let loaded = false;
    readCommands((command: Command | null) => {
      if (!loaded) {
        if (command === null || command.cmd === "drain") {
          resolve(null);
          loaded = true;
        } else {
          loaded = true;
          resolve(command);
        }
        return;
      }
      if (command === null || command.cmd === "drain") stopNow();
    });
    events.emit("standby");
  });
  if (load === null) {
    events.emit("drained", { cut_off: 0 });
    return 0;
  }
  const loadReceived = Date.now();
  // The function's variables, before its modules are imported (they may read them at import time).
  for (const [name, value] of Object.entries(load.environment)) process.env[name] = value;
  if (Object.values(load.environment).some((v) => v.includes("${SECRET:"))) {
    const message = "the Node runtime cannot resolve ${SECRET:...} references yet";
    events.emit("failed", { error: message });
    log.error(message);
    return 1;
  }
  if (load.extraPaths.length > 0) {
    // Extra layers (dependency layer, attached layers) are searched for modules after the app's own.
    const current = process.env.NODE_PATH ? process.env.NODE_PATH.split(path.delimiter) : [];
    process.env.NODE_PATH = [...load.extraPaths.map((p) => path.join(p, "node_modules")), ...load.extraPaths, ...current].join(path.delimiter);
    (require("node:module") as { Module: { _initPaths: () => void } }).Module._initPaths();
  }
  args.maxConcurrency = load.maxConcurrency;
  args.memoryMb = load.memoryMb;
  args.generation = load.generation;
  return serve({ appDir: load.appDir, version: load.version, live: load.live, slot: load.slot }, args, events, stop, loadReceived);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      // Let stderr flush, then leave even if a handler left a timer behind.
      void sleep(50).then(() => process.exit(code));
    },
    (exc: unknown) => {
      process.stderr.write(`${(exc as Error)?.stack ?? String(exc)}\n`);
      process.exit(1);
    },
  );
}
