/**
 * The platform interfaces a Node handler gets (runtimes/python/dormant_runtime/platform.py's, with the same
 * semantics and the same database objects): the DataStore, the Authorizer and Messaging, each acting as the
 * caller of the call being served.
 *
 * - A handler receives them in its constructor (`constructor(platform: Platform)`, where
 *   `platform.data`, `platform.authorizer` and `platform.messaging` are the interfaces; the Python runtime
 *   injects them by the constructor's annotations) or per call as `ctx.data`, `ctx.authorizer` and
 *   `ctx.messaging`. They are the same objects: each use finds the call it runs in (AsyncLocalStorage) and
 *   acts as that call's caller; a use outside a call is a `SystemError`.
 * - The DataStore and the Authorizer run on the call's own transaction, on a connection to the catalog's
 *   database opened at the first use; the runtime commits it together with the call's stored answer
 *   (fenced by the claim, `commitWithAnswer` in server.ts), so the writes happen exactly once per callId,
 *   and rolls it back with an error answer. Every statement is preceded by the transaction-local switch to
 *   the `dormant_fn` role with the caller's claims (`set_config(..., true)`), so row-level security
 *   decides what the caller sees, as in runtimes/python/dormant_runtime/datastore/store.py, whose SQL this
 *   module repeats. The `dormant_data` schema is created by the Python runtime (`ensure_schema`); a Node
 *   runtime whose database lacks it answers DataStore use with `Unavailable`, as does one without a call
 *   store (`--no-dedup`: no fenced transaction to write in).
 * - `Messaging.send(name, body)` publishes an event on `events/{name}` (QoS 1, at once, not after the
 *   commit, as Python's) with the user properties `causation-id` (the callId), `user-id` (the caller's
 *   subject) and `event-id` (derived from the callId, so a re-run sends the same id). One-way calls
 *   (`"service.function"` targets) are not supported by the Node runtime yet (`ValidationError`).
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { createHash, randomUUID } from "node:crypto";

import { Pool, type PoolClient } from "pg";

import type { UserContext } from "./context";
import { Conflict, DormantError, Forbidden, SystemError, Unavailable, ValidationError } from "./errors";
import { log } from "./logger";

export const CALLER_ROLE = "dormant_fn";
export const MAX_PAGE_SIZE = 1000;
const MAX_NESTING = 64;
const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const DOCUMENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const GRANT_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,62}$/;
const MAX_PRINCIPAL = 255;
const EVENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\/[A-Za-z0-9][A-Za-z0-9_-]*)*$/;
const MAX_EVENT_NAME_CHARS = 200;
const ALL_COLLECTIONS = "*";
/** Header names the messaging layer sets itself (dormant.messaging.RESERVED_HEADERS): never a handler's. */
const RESERVED_HEADERS = new Set([
  "authorization",
  "deadline",
  "status",
  "user-id",
  "event-id",
  "causation-id",
  "transfer-id",
  "chunk-index",
  "chunk-total",
  "chunk-sha256",
  "transfer-sha256",
  "transfer-size",
]);

const ENTER =
  `SELECT set_config('role', '${CALLER_ROLE}', true), set_config('request.jwt.claims', $1, true),` +
  " set_config('dormant.service', $2, true), set_config('dormant.call_id', $3, true)";
const LEAVE =
  "SELECT set_config('role', 'none', true), set_config('request.jwt.claims', '', true)," +
  " set_config('dormant.service', '', true), set_config('dormant.call_id', '', true)";

// ------------------------------------------------------------------ the interfaces handlers use

export type JsonObject = Record<string, unknown>;

export interface QueryResult {
  items: JsonObject[];
  total: number;
  page: number;
  pageSize: number;
}

export interface QueryOptions {
  page?: number;
  pageSize?: number;
}

/** Documents in collections, visible as row-level security lets the caller see them. */
export interface DataStore {
  /** Store a document (its `id` when it has one, else a fresh one); the id. `Conflict` if taken. */
  insert(collection: string, document: JsonObject): Promise<string>;
  /** The document with its `id`, or null when there is none the caller may see. */
  getById(collection: string, id: string): Promise<JsonObject | null>;
  /** Documents whose fields equal the filter's values (sorted by id), one page, and how many match. */
  query(collection: string, filter?: JsonObject | null, options?: QueryOptions): Promise<QueryResult>;
  /** Merge `fields` into the document; false when the caller has no such document to change. */
  update(collection: string, id: string, fields: JsonObject): Promise<boolean>;
  delete(collection: string, id: string): Promise<boolean>;
}

/** Roles and permissions on a service's database (`dormant.authorizer`'s rules, enforced in Postgres). */
export interface Authorizer {
  assignRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean>;
  removeRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean>;
  hasRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean>;
  assignPermissions(user: string, permissions: string[] | string, database: string, collection?: string | null): Promise<boolean>;
  removePermissions(user: string, permissions: string[] | string, database: string, collection?: string | null): Promise<boolean>;
  hasPermission(user: string, permission: string, database: string, collection?: string | null): Promise<boolean>;
}

export interface Messaging {
  /** Publish the event `name` (on `events/{name}`) with `body`; returns the event id. */
  send(name: string, body?: unknown, headers?: Record<string, string>): Promise<string>;
}

/** What a handler class's constructor receives. */
export interface Platform {
  readonly data: DataStore;
  readonly authorizer: Authorizer;
  readonly messaging: Messaging;
}

// ------------------------------------------------------------------ the call's transaction

/** The transaction of one call: opened at its first DataStore or Authorizer statement. */
export class CallTransaction {
  private client: PoolClient | null = null;
  private opening: Promise<PoolClient> | null = null;
  /** Set once the runtime ends the transaction: later statements of a handler that ran on are refused. */
  closed = false;
  broken = false;
  private ended = false;
  private readonly onError = (): void => {
    this.broken = true;
  };

  constructor(private readonly pool: Pool) {}

  get opened(): boolean {
    return this.opening !== null;
  }

  async connection(): Promise<PoolClient> {
    if (this.closed) throw new SystemError("the call's transaction has ended");
    this.opening ??= (async () => {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (exc) {
        throw new Unavailable(`no database connection for the handler's transaction: ${(exc as Error).message}`);
      }
      client.on("error", this.onError);
      try {
        await client.query("BEGIN");
      } catch (exc) {
        this.broken = true;
        client.off("error", this.onError);
        client.release(true);
        throw new Unavailable(`the database connection for the handler's transaction failed: ${(exc as Error).message}`);
      }
      this.client = client;
      return client;
    })();
    return this.opening;
  }

  /** Run `statements` in order on the transaction (queued together, so nothing comes between them). */
  async run(statements: [string, unknown[]][]): Promise<Record<string, unknown>[]> {
    const client = await this.connection();
    if (this.closed) throw new SystemError("the call's transaction has ended");
    const pending = statements.map(([text, values]) => client.query(text, values));
    const results = await Promise.allSettled(pending);
    for (const result of results) {
      if (result.status === "rejected") throw databaseError(result.reason, this);
    }
    const last = results[results.length - 1] as PromiseFulfilledResult<{ rows: Record<string, unknown>[] }>;
    return last.value.rows;
  }

  /** The runtime's own statements after the handler (the stored answer), back in its own role. */
  async runAsRuntime(text: string, values: unknown[]): Promise<Record<string, unknown>[]> {
    const client = this.client;
    if (client === null) throw new SystemError("the call's transaction was never opened");
    await client.query(LEAVE);
    return (await client.query(text, values)).rows;
  }

  /** Commit or roll back and give the connection back; never used again afterwards. */
  async end(commit: boolean): Promise<void> {
    this.closed = true;
    if (this.ended) return;
    this.ended = true;
    const opening = this.opening;
    if (opening === null) return;
    let client: PoolClient;
    try {
      client = await opening;
    } catch {
      return;
    }
    this.client = null;
    try {
      if (commit) await client.query("COMMIT");
      else if (!this.broken) await client.query("ROLLBACK");
    } catch (exc) {
      this.broken = true;
      throw exc;
    } finally {
      client.off("error", this.onError);
      client.release(this.broken ? true : undefined);
    }
  }
}

const MISSING_OBJECTS = new Set(["3F000", "42P01", "42883", "42704", "22023"]);

function databaseError(exc: unknown, tx: CallTransaction): Error {
  if (exc instanceof DormantError) return exc;
  const code = (exc as { code?: string }).code;
  if (typeof code !== "string" || code.startsWith("08") || code.startsWith("57P")) {
    tx.broken = true;
    return new Unavailable("the database connection was lost during the call; retry later");
  }
  if (MISSING_OBJECTS.has(code)) {
    log.warn(`the DataStore's schema is missing or out of date: ${(exc as Error).message}`);
    return new Unavailable("the DataStore is unavailable: its schema is not prepared in this database");
  }
  return exc as Error;
}

// ------------------------------------------------------------------ per call

/** What the interfaces need of the call being served. */
export interface CallScope {
  callId: string;
  service: string;
  user: UserContext;
  deadline: number;
  tx: CallTransaction | null;
  ordinals: Map<string, number>;
}

type Publisher = (topic: string, payload: Buffer, userProperties: Record<string, string>, timeoutMs: number) => Promise<void>;

export class RuntimePlatform {
  private readonly scopes = new AsyncLocalStorage<CallScope>();
  private pool: Pool | null = null;
  private publisher: Publisher | null = null;
  private databaseProblem = "this runtime has no database (it runs without a call store)";
  readonly interfaces: Platform;

  constructor() {
    this.interfaces = Object.freeze({
      data: new CallerDataStore(this),
      authorizer: new CallerAuthorizer(this),
      messaging: new CallerMessaging(this),
    });
  }

  /** Give the DataStore its database (the catalog's: the call store's transactions are there). */
  useDatabase(url: string, maxConnections = 16): void {
    this.pool = new Pool({ connectionString: url, max: maxConnections, connectionTimeoutMillis: 10_000 });
    this.pool.on("error", () => undefined); // an idle connection lost: the pool drops it
  }

  usePublisher(publisher: Publisher): void {
    this.publisher = publisher;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (pool !== null) await pool.end().catch(() => undefined);
  }

  /** A fresh scope for a call; its transaction is null when this runtime has no database. */
  scope(fields: Omit<CallScope, "tx" | "ordinals">): CallScope {
    return { ...fields, tx: this.pool === null ? null : new CallTransaction(this.pool), ordinals: new Map() };
  }

  run<T>(scope: CallScope, work: () => T): T {
    return this.scopes.run(scope, work);
  }

  current(): CallScope {
    const scope = this.scopes.getStore();
    if (scope === undefined) {
      throw new SystemError("the DataStore, Authorizer and Messaging can be used only while a call is served");
    }
    return scope;
  }

  transaction(scope: CallScope): CallTransaction {
    if (scope.tx === null) throw new Unavailable(`the DataStore is unavailable: ${this.databaseProblem}`);
    return scope.tx;
  }

  async publish(topic: string, payload: Buffer, props: Record<string, string>, timeoutMs: number): Promise<void> {
    if (this.publisher === null) throw new Unavailable("messaging: this runtime is not connected to the broker");
    await this.publisher(topic, payload, props, timeoutMs);
  }
}

// ------------------------------------------------------------------ validation (dormant.datastore's rules)

export function checkCollection(name: unknown): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new ValidationError("a collection name is a lowercase letter then up to 62 lowercase letters, digits or '_'", {
      collection: typeof name === "string" ? name : String(name),
    });
  }
  return name;
}

function checkField(name: unknown): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new ValidationError("a field name is a lowercase letter then up to 62 lowercase letters, digits or '_'", {
      field: typeof name === "string" ? name : String(name),
    });
  }
  return name;
}

export function checkDocumentId(value: unknown): string {
  if (typeof value !== "string" || !DOCUMENT_ID.test(value)) {
    throw new ValidationError(
      "a document id is 1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
      { id: typeof value === "string" ? value : String(value) },
    );
  }
  return value;
}

function checkPage(page: unknown, pageSize: unknown): [number, number] {
  if (typeof page !== "number" || !Number.isInteger(page) || page < 1) {
    throw new ValidationError("page numbers start at 1", { page: String(page) });
  }
  if (typeof pageSize !== "number" || !Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new ValidationError(`page_size is from 1 to ${MAX_PAGE_SIZE}`, { page_size: String(pageSize), max: MAX_PAGE_SIZE });
  }
  return [page, pageSize];
}

function normalize(value: unknown, where: string, depth: number): unknown {
  if (depth > MAX_NESTING) throw new ValidationError(`${where} is nested deeper than ${MAX_NESTING} levels`);
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new ValidationError(`${where} holds NaN or infinity, which JSON cannot carry`);
    return value;
  }
  if (typeof value === "string") {
    if (value.includes("\u0000")) throw new ValidationError(`${where} holds a NUL character`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item) => normalize(item, where, depth + 1));
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype || isPlainNullProto(value)) {
    const copy: JsonObject = {};
    for (const [key, item] of Object.entries(value as JsonObject)) {
      if (key.includes("\u0000")) throw new ValidationError(`${where} has a key that is not a string: ${JSON.stringify(key)}`);
      copy[key] = normalize(item, where, depth + 1);
    }
    return copy;
  }
  const kind = value === undefined ? "undefined" : typeof value === "object" ? (value as object).constructor?.name ?? "object" : typeof value;
  throw new ValidationError(`${where} holds a ${kind}, which is not a JSON value`);
}

function isPlainNullProto(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.getPrototypeOf(value) === null;
}

function normalizeDocument(document: unknown, allowId: boolean): [string | null, JsonObject] {
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new ValidationError("a document is a JSON object", { got: Array.isArray(document) ? "list" : typeof document });
  }
  const body = normalize(document, "the document", 0) as JsonObject;
  let id: string | null = null;
  if ("id" in body) {
    if (!allowId) throw new ValidationError("a document's id cannot be changed");
    id = checkDocumentId(body.id);
    delete body.id;
  }
  return [id, body];
}

/** Equality conditions of a filter (`{field: value}`, or `{field: {$eq: value}}`). */
function parseFilter(filter: unknown): [string, unknown][] {
  if (filter === null || filter === undefined) return [];
  if (typeof filter !== "object" || Array.isArray(filter)) {
    throw new ValidationError("a filter is a JSON object of field → value or {operator: operand}");
  }
  const conditions: [string, unknown][] = [];
  for (const [raw, spec] of Object.entries(filter as JsonObject)) {
    const name = raw === "id" ? "id" : checkField(raw);
    const keys = spec !== null && typeof spec === "object" && !Array.isArray(spec) ? Object.keys(spec) : [];
    if (keys.some((k) => k.startsWith("$"))) {
      if (!keys.every((k) => k.startsWith("$"))) {
        throw new ValidationError("a filter value mixes operators and fields", { field: name, keys: keys.sort() });
      }
      for (const op of keys) {
        if (op !== "$eq") {
          throw new ValidationError(`the Node runtime's DataStore filters by equality only, not ${JSON.stringify(op)}`, {
            field: name,
            operators: ["$eq"],
          });
        }
        conditions.push([name, normalize((spec as JsonObject)[op], `the filter $eq on ${name}`, 0)]);
      }
    } else {
      conditions.push([name, normalize(spec, `the filter on ${name}`, 0)]);
    }
  }
  return conditions;
}

function claimsJson(user: UserContext): string {
  return JSON.stringify({ sub: user.userId, email: user.email, roles: [...user.roles], groups: [...user.groups] });
}

function enterCaller(scope: CallScope): [string, unknown[]] {
  return [ENTER, [claimsJson(scope.user), scope.service, scope.callId]];
}

function jsonValue(value: unknown): unknown {
  return typeof value === "string" ? (JSON.parse(value) as unknown) : value;
}

// ------------------------------------------------------------------ the DataStore (store.py's statements)

class CallerDataStore implements DataStore {
  constructor(private readonly platform: RuntimePlatform) {}

  private async one(sql: string, values: unknown[]): Promise<Record<string, unknown> | undefined> {
    const scope = this.platform.current();
    const tx = this.platform.transaction(scope);
    const rows = await tx.run([enterCaller(scope), [sql, values]]);
    return rows[0];
  }

  async insert(collection: string, document: JsonObject): Promise<string> {
    checkCollection(collection);
    const [given, body] = normalizeDocument(document, true);
    const id = given ?? randomUUID().replaceAll("-", "");
    const scope = this.platform.current();
    const row = await this.one(
      "WITH ins AS (" +
        "  INSERT INTO dormant_data.documents (service, collection, id, owner, body)" +
        "  VALUES ($1, $2, $3, dormant_data.claim_sub(), $4::jsonb)" +
        "  ON CONFLICT DO NOTHING RETURNING 1)," +
        " audit AS (" +
        "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)" +
        "  SELECT 'insert', $2, $3, jsonb_build_object('done', EXISTS (SELECT FROM ins)))" +
        " SELECT EXISTS (SELECT FROM ins) AS done",
      [scope.service, collection, id, JSON.stringify(body)],
    );
    if (!row?.done) {
      throw new Conflict("a document with this id already exists in the collection", { collection, id });
    }
    return id;
  }

  async update(collection: string, id: string, fields: JsonObject): Promise<boolean> {
    checkCollection(collection);
    checkDocumentId(id);
    const [, changes] = normalizeDocument(fields, false);
    const scope = this.platform.current();
    const row = await this.one(
      "WITH changed AS (" +
        "  UPDATE dormant_data.documents SET body = body || $4::jsonb, updated_at = now()" +
        "  WHERE service = $1 AND collection = $2 AND id = $3 RETURNING 1)," +
        " audit AS (" +
        "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)" +
        "  SELECT 'update', $2, $3, jsonb_build_object(" +
        "    'found', EXISTS (SELECT FROM changed), 'fields', $5::jsonb))" +
        " SELECT EXISTS (SELECT FROM changed) AS found",
      [scope.service, collection, id, JSON.stringify(changes), JSON.stringify(Object.keys(changes).sort())],
    );
    return Boolean(row?.found);
  }

  async delete(collection: string, id: string): Promise<boolean> {
    checkCollection(collection);
    checkDocumentId(id);
    const scope = this.platform.current();
    const row = await this.one(
      "WITH gone AS (" +
        "  DELETE FROM dormant_data.documents" +
        "  WHERE service = $1 AND collection = $2 AND id = $3 RETURNING 1)," +
        " audit AS (" +
        "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)" +
        "  SELECT 'delete', $2, $3," +
        "    jsonb_build_object('found', EXISTS (SELECT FROM gone)))" +
        " SELECT EXISTS (SELECT FROM gone) AS found",
      [scope.service, collection, id],
    );
    return Boolean(row?.found);
  }

  async getById(collection: string, id: string): Promise<JsonObject | null> {
    checkCollection(collection);
    checkDocumentId(id);
    const scope = this.platform.current();
    const row = await this.one(
      "WITH found AS (" +
        "  SELECT body FROM dormant_data.documents" +
        "  WHERE service = $1 AND collection = $2 AND id = $3)," +
        " audit AS (" +
        "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)" +
        "  SELECT 'get', $2, $3, jsonb_build_object('found', EXISTS (SELECT FROM found)))" +
        " SELECT (SELECT body FROM found) AS body",
      [scope.service, collection, id],
    );
    if (row === undefined || row.body === null || row.body === undefined) return null;
    const document = jsonValue(row.body) as JsonObject;
    document.id = id;
    return document;
  }

  async query(collection: string, filter?: JsonObject | null, options: QueryOptions = {}): Promise<QueryResult> {
    options ??= {};
    checkCollection(collection);
    const unknown = Object.keys(options).filter((k) => k !== "page" && k !== "pageSize");
    if (unknown.length > 0) {
      throw new ValidationError("the Node runtime's DataStore query takes page and pageSize only (no sort yet)", {
        options: unknown.sort(),
      });
    }
    const conditions = parseFilter(filter);
    const [page, pageSize] = checkPage(options.page ?? 1, options.pageSize ?? 100);
    const scope = this.platform.current();
    const values: unknown[] = [
      scope.service,
      collection,
      pageSize,
      (page - 1) * pageSize,
      JSON.stringify({ filter: conditions.map(([f, v]) => [f, "$eq", v]), sort: [], page, page_size: pageSize }),
    ];
    let where = "";
    for (const [field, value] of conditions) {
      let sql: string;
      if (field === "id") {
        sql = "to_jsonb(id)";
      } else {
        values.push(field);
        sql = `(body -> $${values.length}::text)`;
      }
      values.push(JSON.stringify(value));
      where += ` AND ${sql} = $${values.length}::jsonb`;
    }
    const order = 'id COLLATE "C"';
    const row = await this.one(
      "WITH matched AS MATERIALIZED (" +
        "  SELECT id, body FROM dormant_data.documents" +
        "  WHERE service = $1 AND collection = $2" +
        where +
        ")," +
        " audit AS (" +
        "  INSERT INTO dormant_data.audit (action, collection, detail)" +
        "  SELECT 'query', $2," +
        "    $5::jsonb || jsonb_build_object('total', (SELECT count(*) FROM matched)))" +
        " SELECT (SELECT count(*) FROM matched) AS total," +
        `  (SELECT coalesce(jsonb_agg(body || jsonb_build_object('id', id) ORDER BY ${order}), '[]')` +
        `   FROM (SELECT id, body FROM matched ORDER BY ${order} LIMIT $3 OFFSET $4) AS p) AS items`,
      values,
    );
    return { items: jsonValue(row?.items ?? "[]") as JsonObject[], total: Number(row?.total ?? 0), page, pageSize };
  }
}

// ------------------------------------------------------------------ the Authorizer (authz.py's calls)

function checkPrincipal(user: unknown): string {
  if (typeof user !== "string" || user.length === 0 || user.length > MAX_PRINCIPAL || user.includes("\u0000")) {
    throw new ValidationError("a user is a token subject: 1 to 255 characters");
  }
  return user;
}

function checkGrantName(name: unknown, what: string): string {
  if (typeof name !== "string" || !GRANT_NAME.test(name)) {
    throw new ValidationError(`a ${what} name is a letter then up to 62 letters, digits, '_', '.', ':' or '-'`, {
      [what]: typeof name === "string" ? name : String(name),
    });
  }
  return name;
}

/** `(database, collection)` as stored: a database-wide grant has the collection "*". */
function checkScope(database: unknown, collection: unknown): [string, string] {
  if (typeof database !== "string" || database.length === 0) {
    throw new ValidationError("a database is the name of a service", { database: String(database) });
  }
  if (collection === null || collection === undefined) return [database, ALL_COLLECTIONS];
  return [database, checkCollection(collection)];
}

class CallerAuthorizer implements Authorizer {
  constructor(private readonly platform: RuntimePlatform) {}

  private async call(sql: string, values: unknown[]): Promise<number> {
    const scope = this.platform.current();
    const rows = await this.platform.transaction(scope).run([enterCaller(scope), [sql, values]]);
    return Number(Object.values(rows[0])[0]);
  }

  private async change(op: string, user: string, kind: string, names: string[] | string, database: string, collection?: string | null): Promise<boolean> {
    user = checkPrincipal(user);
    const listed = [...new Set((typeof names === "string" ? [names] : names).map((n) => checkGrantName(n, kind)))].sort();
    const [db, scope] = checkScope(database, collection);
    const changed = await this.call("SELECT dormant_data.change_grants($1, $2, $3, $4::text[], $5, $6)", [op, user, kind, listed, db, scope]);
    if (changed < 0) throw new Forbidden(`may not ${op} ${kind}s on this database`, { database: db });
    return changed > 0;
  }

  private async check(kind: string, user: string, name: string, database: string, collection?: string | null): Promise<boolean> {
    user = checkPrincipal(user);
    name = checkGrantName(name, kind);
    const [db, scope] = checkScope(database, collection);
    const held = await this.call("SELECT dormant_data.check_grant($1, $2, $3, $4, $5)", [kind, user, name, db, scope]);
    if (held < 0) throw new Forbidden(`may not check this user's ${kind}s on this database`, { database: db });
    return held > 0;
  }

  assignRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean> {
    return this.change("assign", user, "role", [role], database, collection);
  }

  removeRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean> {
    return this.change("remove", user, "role", [role], database, collection);
  }

  hasRole(user: string, role: string, database: string, collection?: string | null): Promise<boolean> {
    return this.check("role", user, role, database, collection);
  }

  assignPermissions(user: string, permissions: string[] | string, database: string, collection?: string | null): Promise<boolean> {
    return this.change("assign", user, "permission", permissions, database, collection);
  }

  removePermissions(user: string, permissions: string[] | string, database: string, collection?: string | null): Promise<boolean> {
    return this.change("remove", user, "permission", permissions, database, collection);
  }

  hasPermission(user: string, permission: string, database: string, collection?: string | null): Promise<boolean> {
    return this.check("permission", user, permission, database, collection);
  }
}

// ------------------------------------------------------------------ Messaging (events only)

/** dormant.callid.child_call_id: the callId of the n-th message to `target` sent while serving `parent`. */
export function childCallId(parent: string, target: string, n: number): string {
  return "c-" + createHash("sha256").update(`${parent}\u0000${target}#${n}`, "utf8").digest("hex").slice(0, 32);
}

class CallerMessaging implements Messaging {
  constructor(private readonly platform: RuntimePlatform) {}

  async send(name: string, body: unknown = null, headers: Record<string, string> = {}): Promise<string> {
    const scope = this.platform.current();
    if (name.includes(".")) {
      throw new ValidationError("one-way calls (\"service.function\") are not supported by the Node runtime yet", { target: name });
    }
    if (!EVENT_NAME.test(name) || name.length > MAX_EVENT_NAME_CHARS) {
      throw new ValidationError(
        `${JSON.stringify(name.slice(0, 100))} is not an event name: /-separated segments of letters, digits, _ and -, ` +
          `at most ${MAX_EVENT_NAME_CHARS} characters`,
        { name: name.slice(0, 100) },
      );
    }
    const forged = [...new Set(Object.keys(headers).map((k) => k.toLowerCase()).filter((k) => RESERVED_HEADERS.has(k)))].sort();
    if (forged.length > 0) {
      throw new ValidationError(`these headers are set by Dormant and cannot be given: ${forged.join(", ")}`);
    }
    const key = "event:" + name;
    const n = (scope.ordinals.get(key) ?? 0) + 1;
    scope.ordinals.set(key, n);
    const eventId = childCallId(scope.callId, key, n);
    const props: Record<string, string> = { ...headers, "causation-id": scope.callId };
    if (scope.user.userId !== null) props["user-id"] = scope.user.userId;
    props["event-id"] = eventId;
    const payload = Buffer.from(JSON.stringify(normalize(body, "the event", 0)), "utf8");
    await this.platform.publish(`events/${name}`, payload, props, Math.max(1, scope.deadline - Date.now()));
    return eventId;
  }
}

/** The one platform of this process (handlers' constructors get its interfaces). */
export const runtimePlatform = new RuntimePlatform();
