/**
 * The dev mesh's state for the status bar: `dormant dev` writes STATE/mesh.json while it runs (and
 * removes it when it stops); this module reads that record and says what to show. No I/O here: the
 * extension reads the file and probes the gateway's /healthz, and passes the results in.
 */

export interface MeshRecord {
  service: string;
  version: number | undefined;
  pods: number | undefined;
  replicas: number | undefined;
  gatewayUrl: string | undefined;
  /** Where the liveness probe goes: the gateway's observability address (serves /healthz). */
  healthUrl: string | undefined;
  brokerUrl: string | undefined;
  catalogUrl: string | undefined;
  caFile: string | undefined;
  stateDir: string | undefined;
}

export type MeshRead =
  | { kind: "absent" }
  | { kind: "invalid"; reason: string }
  | { kind: "record"; record: MeshRecord };

/** Liveness of a recorded mesh: "up" (the gateway answered), "down" (it did not), "unknown" (not probed). */
export type Probe = "up" | "down" | "unknown";

export interface StatusView {
  text: string;
  tooltip: string;
  /** "ok", "warning" or "off": the extension picks the status-bar colours from it. */
  tone: "ok" | "warning" | "off";
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function int(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) ? value : undefined;
}

/** `mesh.json`'s text (undefined: the file does not exist) as a record, or why it is not one. */
export function parseMeshRecord(text: string | undefined): MeshRead {
  if (text === undefined) {
    return { kind: "absent" };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return { kind: "invalid", reason: `mesh.json is not JSON: ${(error as Error).message}` };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { kind: "invalid", reason: "mesh.json does not hold a JSON object" };
  }
  const raw = data as Record<string, unknown>;
  const service = str(raw.service);
  if (service === undefined) {
    return { kind: "invalid", reason: "mesh.json names no service" };
  }
  const observability = raw.observability;
  const gatewayHealth =
    typeof observability === "object" && observability !== null
      ? str((observability as Record<string, unknown>).gateway)
      : undefined;
  const gatewayUrl = str(raw.gatewayUrl);
  return {
    kind: "record",
    record: {
      service,
      version: int(raw.version),
      pods: int(raw.pods),
      replicas: int(raw.replicas),
      gatewayUrl,
      healthUrl: healthUrl(gatewayHealth ?? gatewayUrl),
      brokerUrl: str(raw.brokerUrl),
      catalogUrl: str(raw.catalogUrl),
      caFile: str(raw.caFile),
      stateDir: str(raw.stateDir),
    },
  };
}

/** `base` + `/healthz` for an http(s) base URL; undefined for anything else. */
export function healthUrl(base: string | undefined): string | undefined {
  if (base === undefined || !/^https?:\/\//.test(base)) {
    return undefined;
  }
  return base.replace(/\/+$/, "") + "/healthz";
}

/** Hides the password of a URL (`mqtt://user:secret@host` → `mqtt://user:***@host`). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]+):[^@/]*@/i, "$1:***@");
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** What the status-bar item shows for a read of mesh.json and a probe of its gateway. */
export function describeMesh(read: MeshRead, probe: Probe): StatusView {
  if (read.kind === "absent") {
    return {
      text: "$(circle-slash) Dormant: no dev mesh",
      tooltip: "No dev mesh runs in this workspace (no .dormant/dev/mesh.json). Start one with `dormant dev`.",
      tone: "off",
    };
  }
  if (read.kind === "invalid") {
    return { text: "$(warning) Dormant: mesh record unreadable", tooltip: read.reason, tone: "warning" };
  }
  const r = read.record;
  const what = r.version === undefined ? r.service : `${r.service} v${r.version}`;
  const lines = [`Dev mesh serving ${what}`];
  if (r.pods !== undefined) {
    lines.push(`${plural(r.pods, "pod")}, ${plural(r.replicas ?? 0, "replica")}`);
  }
  if (r.gatewayUrl !== undefined) lines.push(`gateway: ${r.gatewayUrl}`);
  if (r.brokerUrl !== undefined) lines.push(`broker: ${redactUrl(r.brokerUrl)}`);
  if (r.catalogUrl !== undefined) lines.push(`catalog: ${redactUrl(r.catalogUrl)}`);
  if (probe === "down") {
    return {
      text: `$(warning) Dormant: ${what} (not answering)`,
      tooltip: [
        `mesh.json names ${what}, but its gateway does not answer at ${r.healthUrl ?? "?"}:`,
        "`dormant dev` stopped without cleaning up, or is still starting.",
        ...lines.slice(1),
      ].join("\n"),
      tone: "warning",
    };
  }
  const pods = r.pods === undefined ? "" : ` · ${plural(r.pods, "pod")}`;
  return { text: `$(pulse) Dormant: ${what}${pods}`, tooltip: lines.join("\n"), tone: "ok" };
}
