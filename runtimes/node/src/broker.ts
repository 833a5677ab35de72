/**
 * The broker address as Dormant writes it (libs/python/dormant/config.py, `parse_broker_url`):
 * `mqtt://[user[:password]@]host[:port]` or `mqtts://...`, user name and password percent-encoded, TLS
 * files as `?cafile=&certfile=&keyfile=` or from `DORMANT_BROKER_CA_FILE`, `DORMANT_BROKER_CERT_FILE`,
 * `DORMANT_BROKER_KEY_FILE`. Turned into MQTT.js connection options.
 */

import * as fs from "node:fs";

import type { IClientOptions } from "mqtt";

export const DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883";

const TLS_PARAMS: Record<string, string> = {
  cafile: "DORMANT_BROKER_CA_FILE",
  certfile: "DORMANT_BROKER_CERT_FILE",
  keyfile: "DORMANT_BROKER_KEY_FILE",
};

/** The URL without its password (for logs and errors). */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}

export function brokerOptions(url: string, env: NodeJS.ProcessEnv = process.env): IClientOptions {
  const parsed = new URL(url.includes("://") ? url : `mqtt://${url}`);
  const tls = parsed.protocol === "mqtts:";
  if (!tls && parsed.protocol !== "mqtt:") throw new Error(`the broker URL must be mqtt:// or mqtts://: ${redactUrl(url)}`);
  if ((parsed.pathname && parsed.pathname !== "/") || parsed.hash) {
    throw new Error(`a broker URL has no path or fragment: ${redactUrl(url)}`);
  }
  const files: Record<string, string | undefined> = {};
  for (const [param, name] of Object.entries(TLS_PARAMS)) files[name] = env[name] || undefined;
  for (const [param, value] of parsed.searchParams) {
    const name = TLS_PARAMS[param];
    if (name === undefined) throw new Error(`unknown broker URL parameter ${param} (known: ${Object.keys(TLS_PARAMS).join(", ")})`);
    files[name] = value;
  }
  const options: IClientOptions = {
    protocol: tls ? "mqtts" : "mqtt",
    hostname: parsed.hostname.replace(/^\[|\]$/g, ""),
    port: parsed.port ? Number(parsed.port) : tls ? 8883 : 1883,
  };
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (tls) {
    if (files.DORMANT_BROKER_CA_FILE) options.ca = fs.readFileSync(files.DORMANT_BROKER_CA_FILE);
    if (files.DORMANT_BROKER_CERT_FILE) {
      const cert = fs.readFileSync(files.DORMANT_BROKER_CERT_FILE);
      options.cert = cert;
      options.key = files.DORMANT_BROKER_KEY_FILE ? fs.readFileSync(files.DORMANT_BROKER_KEY_FILE) : cert;
    }
    options.rejectUnauthorized = true;
  } else if (Object.values(files).some(Boolean)) {
    throw new Error(`TLS files are set but ${redactUrl(url)} is not TLS: use mqtts:// (or unset them)`);
  }
  return options;
}
