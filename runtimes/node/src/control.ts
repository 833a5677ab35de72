/**
 * The runtime side of the sidecar control protocol (libs/python/dormant/_control.py): commands as JSON
 * lines on stdin (`load`, `drain`; stdin closing also means drain), events as JSON lines on the file
 * descriptor named by `DORMANT_CONTROL_FD`: `standby`, `ready`, `failed` (with `error`), `drained` (with
 * `cut_off`) and `connection` (with `connected`).
 */

import * as fs from "node:fs";
import * as readline from "node:readline";

export const CONTROL_FD_ENV = "DORMANT_CONTROL_FD";
export const EVENTS = new Set(["standby", "ready", "failed", "drained", "connection"]);

export interface LoadCommand {
  cmd: "load";
  appDir: string;
  service: string;
  version: number;
  live: boolean;
  slot: number | null;
  environment: Record<string, string>;
  extraPaths: string[];
  secretsToken: string | null;
  memoryMb: number | null;
  maxConcurrency: number | null;
  generation: number | null;
}

export type Command = LoadCommand | { cmd: "drain" };

function positiveInt(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : null;
}

/** The command on one stdin line; null for a line that is not one (ignored). */
export function decodeCommand(line: string): Command | null {
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch {
    return null;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) return null;
  const d = data as Record<string, unknown>;
  if (d.cmd === "drain") return { cmd: "drain" };
  if (d.cmd !== "load") return null;
  if (typeof d.app_dir !== "string" || typeof d.version !== "number" || !Number.isInteger(d.version)) return null;
  const environment = d.environment ?? {};
  if (
    environment === null ||
    typeof environment !== "object" ||
    Array.isArray(environment) ||
    !Object.values(environment).every((v) => typeof v === "string")
  ) {
    return null;
  }
  const extra = d.extra_paths ?? [];
  if (!Array.isArray(extra) || !extra.every((p) => typeof p === "string")) return null;
  return {
    cmd: "load",
    appDir: d.app_dir,
    service: typeof d.service === "string" ? d.service : "",
    version: d.version,
    live: d.live === undefined ? true : Boolean(d.live),
    slot: typeof d.slot === "number" && Number.isInteger(d.slot) ? d.slot : null,
    environment: environment as Record<string, string>,
    extraPaths: extra as string[],
    secretsToken: typeof d.secrets_token === "string" && d.secrets_token ? d.secrets_token : null,
    memoryMb: positiveInt(d.memory_mb),
    maxConcurrency: positiveInt(d.max_concurrency),
    generation: positiveInt(d.generation),
  };
}

/** Writes events to the sidecar; silent when there is none. */
export class EventChannel {
  constructor(private fd: number | null) {}

  static fromEnv(): EventChannel {
    const raw = process.env[CONTROL_FD_ENV];
    return new EventChannel(raw && /^[0-9]+$/.test(raw) ? Number(raw) : null);
  }

  emit(event: string, fields: Record<string, unknown> = {}): void {
    if (!EVENTS.has(event)) throw new Error(`not a control event: ${event}`);
    if (this.fd === null) return;
    try {
      fs.writeSync(this.fd, JSON.stringify({ event, ...fields }) + "\n");
    } catch {
      this.fd = null;
    }
  }
}

/** Calls `onCommand` for each command on stdin and with null when stdin closes. */
export function readCommands(onCommand: (command: Command | null) => void): void {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    const command = decodeCommand(line);
    if (command !== null) onCommand(command);
  });
  lines.on("close", () => onCommand(null));
}
