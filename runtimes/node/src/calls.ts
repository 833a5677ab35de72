/**
 * `CallStore`: the catalog's `call_results` table, which makes a callId run its handler at most once,
 * with the same statements, lock order and fencing as catalog/dormant_catalog/calls.py, so Python and
 * Node runtimes of one service share calls (see that module for the protocol).
 *
 * A call is keyed by (service, function, callId) and carries the sha256 fingerprint of its canonical
 * input. A claim inserts a `running` row under a lease, or finds one: finished (`done`), run by another
 * live runtime (`running`), or another input (`conflict`). Completion is fenced by the owner. Two
 * connections (claims; everything else), `synchronous_commit = off`; deadlocks and serialization
 * failures are retried; a lost connection is `CatalogUnavailable` and is replaced on the next statement.
 */

import { Client, type QueryResultRow } from "pg";

import { MAX_STORED_CALL_ID_BYTES, callIdProblem } from "./wire";

export const DEFAULT_LEASE_S = 5.0;
export const DEFAULT_TTL_S = 24 * 3600;
const CONFLICT_RETRIES = 5;
const CONFLICT_BACKOFF_MS = 5;
const CONFLICT_SQLSTATES = new Set(["40001", "40P01"]);
const TRANSIENT_SQLSTATES = new Set(["40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"]);
const TRANSIENT_CLASSES = new Set(["08", "53"]);

export { MAX_STORED_CALL_ID_BYTES };

export class CatalogUnavailable extends Error {}
export class InvalidCatalogRequest extends Error {}

export type CallKey = string;
/** The map key of (function, callId). */
export function callKey(fn: string, callId: string): CallKey {
  return fn + "\u0000" + callId;
}

export interface Claim {
  function: string;
  callId: string;
  fingerprint: Buffer;
}

export type StateKind = "run" | "done" | "running" | "absent" | "conflict";

export interface CallState {
  kind: StateKind;
  ok?: boolean;
  response?: Buffer;
  attempts?: number;
  leaseExpired?: boolean;
  fingerprint?: Buffer | null;
  mine?: boolean;
}

/** False when the stored call had another input (a row without a fingerprint matches anything). */
export function matches(state: CallState, fingerprint: Buffer): boolean {
  return state.fingerprint === undefined || state.fingerprint === null || state.fingerprint.equals(fingerprint);
}

const CLAIM = `
INSERT INTO call_results AS r
  (app_name, function, call_id, fingerprint, status, owner, lease_expires_at, version, created_at,
   expires_at)
SELECT $1, k.function, k.call_id, k.fingerprint, 'running', $2,
       now() + make_interval(secs => $3::float8), $4, now(),
       now() + make_interval(secs => $5::float8)
FROM unnest($6::text[], $7::text[], $8::bytea[])
  AS k(function, call_id, fingerprint)
ORDER BY k.function, k.call_id
ON CONFLICT (app_name, function, call_id) DO UPDATE
  SET owner = EXCLUDED.owner, lease_expires_at = EXCLUDED.lease_expires_at, version = EXCLUDED.version,
      attempts = r.attempts + 1, fingerprint = COALESCE(r.fingerprint, EXCLUDED.fingerprint)
  WHERE r.status = 'running'
    AND (r.owner = EXCLUDED.owner OR r.lease_expires_at IS NULL OR r.lease_expires_at < now())
    AND (r.fingerprint IS NULL OR r.fingerprint = EXCLUDED.fingerprint)
RETURNING r.function, r.call_id, r.attempts
`;

// Our running rows among the keys ($1 app, $2 owner, $3 functions, $4 ids), locked in key order.
const oursLocked = (skip: string) => `
locked AS (
  SELECT r.function, r.call_id FROM call_results AS r
  JOIN unnest($3::text[], $4::text[]) AS k(function, call_id)
    ON r.function = k.function AND r.call_id = k.call_id
  WHERE r.app_name = $1 AND r.owner = $2 AND r.status = 'running'
  ORDER BY r.function, r.call_id
  FOR UPDATE OF r${skip}
)
`;

const MATCH_LOCKED = `
r.app_name = $1 AND r.function = locked.function AND r.call_id = locked.call_id
AND r.owner = $2 AND r.status = 'running'
`;

const COMPLETE =
  "WITH" +
  oursLocked("") +
  `, v AS (
  SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[])
    AS v(function, call_id, status, response)
)
UPDATE call_results AS r
SET status = v.status, response = v.response, owner = NULL, lease_expires_at = NULL, finished_at = now()
FROM locked JOIN v ON v.function = locked.function AND v.call_id = locked.call_id
WHERE` +
  MATCH_LOCKED +
  "RETURNING r.function, r.call_id";

const COMPLETE_ONE = `
UPDATE call_results
SET status = $5, response = $6, owner = NULL, lease_expires_at = NULL, finished_at = now()
WHERE app_name = $1 AND function = $3 AND call_id = $4 AND owner = $2
  AND status = 'running'
RETURNING function, call_id
`;

const RELEASE = "WITH" + oursLocked("") + "DELETE FROM call_results AS r USING locked WHERE" + MATCH_LOCKED;

const RENEW =
  "WITH" +
  oursLocked(" SKIP LOCKED") +
  `UPDATE call_results AS r SET lease_expires_at = now() + make_interval(secs => $5::float8)
FROM locked WHERE` +
  MATCH_LOCKED;

const READ = `
SELECT r.function, r.call_id, r.status, r.response, r.fingerprint,
       (r.lease_expires_at IS NULL OR r.lease_expires_at < now()) AS expired,
       r.owner IS NOT DISTINCT FROM $2 AS mine
FROM call_results AS r
JOIN unnest($3::text[], $4::text[]) AS k(function, call_id)
  ON r.function = k.function AND r.call_id = k.call_id
WHERE r.app_name = $1
`;

const PURGE = `
DELETE FROM call_results AS r USING (
  SELECT app_name, function, call_id FROM call_results WHERE expires_at < now()
  ORDER BY app_name, function, call_id LIMIT $1 FOR UPDATE SKIP LOCKED
) AS old
WHERE r.app_name = old.app_name AND r.function = old.function AND r.call_id = old.call_id
RETURNING 1
`;

interface PgError extends Error {
  code?: string;
}

function isTransient(exc: unknown): boolean {
  const code = (exc as PgError).code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true; // the connection failed or broke
  return TRANSIENT_SQLSTATES.has(code) || TRANSIENT_CLASSES.has(code.slice(0, 2));
}

class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  }
}

interface Connection {
  client: Client | null;
  broken: boolean;
  lock: Mutex;
}

export interface CallStoreOptions {
  appName: string;
  owner: string;
  version: number | null;
  leaseS?: number;
  ttlS?: number;
  connectTimeoutS?: number;
}

export class CallStore {
  readonly appName: string;
  readonly owner: string;
  readonly version: number | null;
  readonly leaseS: number;
  readonly ttlS: number;
  private readonly connectTimeoutS: number;
  private readonly claims: Connection = { client: null, broken: false, lock: new Mutex() };
  private readonly other: Connection = { client: null, broken: false, lock: new Mutex() };

  constructor(
    readonly url: string,
    options: CallStoreOptions,
  ) {
    this.appName = options.appName;
    this.owner = options.owner;
    this.version = options.version;
    this.leaseS = options.leaseS ?? DEFAULT_LEASE_S;
    this.ttlS = options.ttlS ?? DEFAULT_TTL_S;
    this.connectTimeoutS = options.connectTimeoutS ?? 5;
  }

  private async connect(conn: Connection): Promise<Client> {
    const client = new Client({ connectionString: this.url, connectionTimeoutMillis: this.connectTimeoutS * 1000 });
    client.on("error", () => {
      conn.broken = true; // a server restart: replaced before the next statement
    });
    try {
      await client.connect();
      await client.query("SET synchronous_commit = off");
    } catch (exc) {
      client.end().catch(() => undefined);
      throw new CatalogUnavailable(`catalog database unreachable: ${(exc as Error).message}`);
    }
    conn.client = client;
    conn.broken = false;
    return client;
  }

  async open(): Promise<void> {
    await this.connect(this.claims);
    await this.connect(this.other);
  }

  async close(): Promise<void> {
    for (const conn of [this.claims, this.other]) {
      const client = conn.client;
      conn.client = null;
      if (client !== null) await client.end().catch(() => undefined);
    }
  }

  /** One statement (autocommit), retried when it lost a deadlock or a serialization check. */
  private run(conn: Connection, name: string, sql: string, params: unknown[]): Promise<QueryResultRow[]> {
    return conn.lock.run(async () => {
      for (let attempt = 0; ; attempt++) {
        let client = conn.client;
        if (client === null || conn.broken) {
          if (client !== null) client.end().catch(() => undefined);
          conn.client = null;
          client = await this.connect(conn);
        }
        try {
          const result = await client.query({ name: `dormant-${name}`, text: sql, values: params });
          return result.rows;
        } catch (exc) {
          const code = (exc as PgError).code;
          if (code !== undefined && CONFLICT_SQLSTATES.has(code) && attempt < CONFLICT_RETRIES) {
            await sleep(CONFLICT_BACKOFF_MS * 2 ** attempt * (0.5 + Math.random()));
            continue;
          }
          if (isTransient(exc)) {
            conn.broken = code === undefined || !CONFLICT_SQLSTATES.has(code) ? true : conn.broken;
            throw new CatalogUnavailable(`catalog database unreachable: ${(exc as Error).message}`);
          }
          throw exc;
        }
      }
    });
  }

  private keyParams(keys: [string, string][]): unknown[] {
    return [this.appName, this.owner, keys.map((k) => k[0]), keys.map((k) => k[1])];
  }

  /** Claim calls; per key: `run`, `done`, `running` or `conflict`. A key given twice is claimed once. */
  async claim(claims: Claim[]): Promise<Map<CallKey, CallState>> {
    const first = new Map<CallKey, Claim>();
    for (const claim of claims) {
      const problem = callIdProblem(claim.callId);
      if (problem !== null) throw new InvalidCatalogRequest(problem);
      const key = callKey(claim.function, claim.callId);
      if (!first.has(key)) first.set(key, claim);
    }
    const unique = [...first.values()];
    const found = new Map<CallKey, CallState>();
    if (unique.length === 0) return found;
    const rows = await this.run(this.claims, "claim", CLAIM, [
      this.appName,
      this.owner,
      this.leaseS,
      this.version,
      this.ttlS,
      unique.map((c) => c.function),
      unique.map((c) => c.callId),
      unique.map((c) => c.fingerprint),
    ]);
    for (const row of rows) {
      const key = callKey(String(row.function), String(row.call_id));
      found.set(key, { kind: "run", attempts: Number(row.attempts), fingerprint: first.get(key)!.fingerprint });
    }
    const existing = [...first.keys()].filter((k) => !found.has(k));
    if (existing.length > 0) {
      const states = await this.readWith(
        this.claims,
        existing.map((k) => {
          const c = first.get(k)!;
          return [c.function, c.callId] as [string, string];
        }),
      );
      for (const [key, state0] of states) {
        let state = state0.kind === "absent" ? ({ kind: "running" } as CallState) : state0;
        if (!matches(state, first.get(key)!.fingerprint)) state = { kind: "conflict", fingerprint: state.fingerprint };
        found.set(key, state);
      }
    }
    return found;
  }

  /** The current state of calls (for a runtime waiting on another's run). */
  read(keys: [string, string][]): Promise<Map<CallKey, CallState>> {
    return this.readWith(this.other, keys);
  }

  private async readWith(conn: Connection, keys: [string, string][]): Promise<Map<CallKey, CallState>> {
    const rows = await this.run(conn, conn === this.claims ? "read-claims" : "read", READ, this.keyParams(keys));
    const found = new Map<CallKey, CallState>();
    for (const [fn, id] of keys) found.set(callKey(fn, id), { kind: "absent" });
    for (const row of rows) {
      const key = callKey(String(row.function), String(row.call_id));
      const fp = row.fingerprint === null ? null : Buffer.from(row.fingerprint as Buffer);
      if (row.status === "ok" || row.status === "error") {
        found.set(key, {
          kind: "done",
          ok: row.status === "ok",
          response: row.response === null ? Buffer.alloc(0) : Buffer.from(row.response as Buffer),
          fingerprint: fp,
        });
      } else {
        found.set(key, { kind: "running", leaseExpired: Boolean(row.expired), fingerprint: fp, mine: Boolean(row.mine) });
      }
    }
    return found;
  }

  /** Store finished responses; returns the keys stored (those we still owned). */
  async complete(results: [[string, string], boolean, Buffer][]): Promise<Set<CallKey>> {
    if (results.length === 0) return new Set();
    let rows: QueryResultRow[];
    if (results.length === 1) {
      const [[fn, id], ok, response] = results[0];
      rows = await this.run(this.other, "complete-one", COMPLETE_ONE, [
        this.appName,
        this.owner,
        fn,
        id,
        ok ? "ok" : "error",
        response,
      ]);
    } else {
      rows = await this.run(this.other, "complete", COMPLETE, [
        this.appName,
        this.owner,
        results.map((r) => r[0][0]),
        results.map((r) => r[0][1]),
        results.map((r) => (r[1] ? "ok" : "error")),
        results.map((r) => r[2]),
      ]);
    }
    return new Set(rows.map((row) => callKey(String(row.function), String(row.call_id))));
  }

  /** Store one answer inside the handler's open transaction (`run` executes on it), fenced like `complete`:
   * the handler's writes and the stored answer then commit together, or not at all. True when stored. */
  async completeIn(
    run: (text: string, values: unknown[]) => Promise<QueryResultRow[]>,
    key: [string, string],
    ok: boolean,
    response: Buffer,
  ): Promise<boolean> {
    const rows = await run(COMPLETE_ONE, [this.appName, this.owner, key[0], key[1], ok ? "ok" : "error", response]);
    return rows.length > 0;
  }

  /** Forget our running claims (the call failed in a way a retry may fix). */
  async release(keys: [string, string][]): Promise<void> {
    if (keys.length > 0) await this.run(this.other, "release", RELEASE, this.keyParams(keys));
  }

  /** Extend the leases of our running calls. */
  async renew(keys: [string, string][]): Promise<void> {
    if (keys.length > 0) await this.run(this.other, "renew", RENEW, [...this.keyParams(keys), this.leaseS]);
  }

  /** Delete up to `limit` expired results (of every service); returns how many. */
  async purgeExpired(limit = 1000): Promise<number> {
    return (await this.run(this.other, "purge", PURGE, [limit])).length;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
