/**
 * JSON-lines logging on stderr (a pod's sidecar reads the runtime's output line by line), in the record
 * format of libs/python/dormant_telemetry/logs.py: `timestamp`, `level` (`DEBUG`, `INFO`, `WARNING`,
 * `ERROR`), `requestId` (the callId, inside a call), `functionName` (the service), `version` (`v{N}`),
 * `message`, `logger`, `component` ("runtime") and, for a handler's lines, `function`.
 */

export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function threshold(): number {
  const raw = (process.env.DORMANT_LOG_LEVEL ?? "info").toLowerCase();
  const level = raw === "warning" ? "warn" : raw;
  return ORDER[level as Level] ?? ORDER.info;
}

let minimum = threshold();

export function setLogLevel(level: Level): void {
  minimum = ORDER[level];
}

const defaults: { functionName: string | null; version: string | null } = { functionName: null, version: null };

/** Name the service and version every line is about (once it is loaded). */
export function setLogService(service: string, version: number): void {
  defaults.functionName = service;
  defaults.version = `v${version}`;
}

export class Logger {
  constructor(
    readonly name: string,
    private readonly fields: Record<string, unknown> = {},
  ) {}

  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger {
    return new Logger(this.name, { ...this.fields, ...fields });
  }

  debug(message: string, extra?: Record<string, unknown>): void {
    this.write("debug", message, extra);
  }

  info(message: string, extra?: Record<string, unknown>): void {
    this.write("info", message, extra);
  }

  warn(message: string, extra?: Record<string, unknown>): void {
    this.write("warn", message, extra);
  }

  error(message: string, extra?: Record<string, unknown>): void {
    this.write("error", message, extra);
  }

  private write(level: Level, message: string, extra?: Record<string, unknown>): void {
    if (ORDER[level] < minimum) return;
    const line: Record<string, unknown> = {
      timestamp: new Date().toISOString(),
      level: level === "warn" ? "WARNING" : level.toUpperCase(),
      requestId: null,
      functionName: defaults.functionName,
      version: defaults.version,
      message,
      logger: this.name,
      component: "runtime",
      ...this.fields,
      ...(extra ?? {}),
    };
    let text: string;
    try {
      text = JSON.stringify(line);
    } catch {
      text = JSON.stringify({ timestamp: line.timestamp, level: line.level, logger: this.name, message });
    }
    process.stderr.write(text + "\n");
  }
}

export const log = new Logger("dormant.runtime");
