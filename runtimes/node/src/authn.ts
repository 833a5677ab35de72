/**
 * Who is calling: the bearer token of a call verified into a `UserContext` before dispatch, configured
 * as the Python runtime is (dormant_auth.IssuerConfig.from_env): `DORMANT_OIDC_ISSUER` and
 * `DORMANT_OIDC_AUDIENCE`, `DORMANT_OIDC_JWKS_URL` or `DORMANT_OIDC_DISCOVERY_URL` (default
 * `{issuer}/.well-known/openid-configuration`) or the key set inline in `DORMANT_OIDC_JWKS`,
 * `DORMANT_OIDC_CA_FILE`, `DORMANT_OIDC_{USER,EMAIL,ROLES,GROUPS}_CLAIM`, and for opaque tokens
 * `DORMANT_OIDC_INTROSPECTION_URL` with `DORMANT_OIDC_CLIENT_ID`/`DORMANT_OIDC_CLIENT_SECRET`.
 *
 * The token is taken out of the call's headers here, so handler code sees the caller only as
 * `ctx.user`. Where authentication is `off` the token is dropped unread; a token that is present is
 * verified even where authentication is optional (a bad token is `Unauthenticated`, never anonymous).
 * A runtime with no issuer configured refuses every call that carries a token.
 *
 * Keys: fetched on first use, refetched when a token names an unknown `kid` (at most every 10 s) or
 * when older than an hour; when a refetch fails the keys already known keep serving. Verified tokens
 * are cached until their expiry.
 */

import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";

import { type JSONWebKeySet, type JWTPayload, createLocalJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify } from "jose";

import { ANONYMOUS, type UserContext } from "./context";
import { Unauthenticated, Unavailable } from "./errors";
import type { AuthMode } from "./loader";
import { log } from "./logger";
import { PROP_AUTHORIZATION } from "./wire";

const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];
const MAX_TOKEN_BYTES = 16 * 1024;
const LEEWAY_S = 5;
const MIN_REFRESH_MS = 10_000;
const MAX_KEY_AGE_MS = 3_600_000;
const INTROSPECTION_MAX_AGE_MS = 300_000;
const CACHE_CAPACITY = 10_000;

export interface IssuerConfig {
  issuer: string;
  audience: string;
  discoveryUrl: string | null;
  jwksUrl: string | null;
  jwks: string | null;
  introspectionUrl: string | null;
  clientId: string | null;
  clientSecret: string | null;
  caFile: string | null;
  claims: { userId: string; email: string; roles: string; groups: string };
}

/** The trusted issuer from `DORMANT_OIDC_*`; null when none is configured. */
export function issuerFromEnv(env: NodeJS.ProcessEnv = process.env): IssuerConfig | null {
  const issuer = env.DORMANT_OIDC_ISSUER;
  if (!issuer) return null;
  const audience = env.DORMANT_OIDC_AUDIENCE;
  if (!audience) throw new Error("DORMANT_OIDC_ISSUER is set but DORMANT_OIDC_AUDIENCE is not");
  return {
    issuer,
    audience,
    discoveryUrl: env.DORMANT_OIDC_DISCOVERY_URL || null,
    jwksUrl: env.DORMANT_OIDC_JWKS_URL || null,
    jwks: env.DORMANT_OIDC_JWKS || null,
    introspectionUrl: env.DORMANT_OIDC_INTROSPECTION_URL || null,
    clientId: env.DORMANT_OIDC_CLIENT_ID || null,
    clientSecret: env.DORMANT_OIDC_CLIENT_SECRET || null,
    caFile: env.DORMANT_OIDC_CA_FILE || null,
    claims: {
      userId: env.DORMANT_OIDC_USER_CLAIM || "sub",
      email: env.DORMANT_OIDC_EMAIL_CLAIM || "email",
      roles: env.DORMANT_OIDC_ROLES_CLAIM || "roles",
      groups: env.DORMANT_OIDC_GROUPS_CLAIM || "groups",
    },
  };
}

/** The token of `Bearer <token>`; null when there is no value; `Unauthenticated` for another shape. */
export function bearerToken(authorization: string | undefined): string | null {
  if (authorization === undefined || !authorization.trim()) return null;
  const text = authorization.trim();
  const space = text.indexOf(" ");
  const scheme = space < 0 ? text : text.slice(0, space);
  const token = space < 0 ? "" : text.slice(space + 1).trim();
  if (scheme.toLowerCase() !== "bearer" || !token || token.includes(" ")) {
    throw new Unauthenticated("the authorization must be 'Bearer <token>'");
  }
  if (token.length > MAX_TOKEN_BYTES) throw new Unauthenticated(`the bearer token is longer than ${MAX_TOKEN_BYTES} bytes`);
  return token;
}

function lookup(claims: Record<string, unknown>, name: string): unknown {
  let value: unknown = claims;
  for (const part of name.split(".")) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function names(value: unknown): string[] {
  if (typeof value === "string") return value.replace(/,/g, " ").split(/\s+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string" && v.length > 0);
  return [];
}

export function userFromClaims(claims: Record<string, unknown>, config: IssuerConfig): UserContext {
  const userId = lookup(claims, config.claims.userId);
  const email = lookup(claims, config.claims.email);
  return Object.freeze({
    userId: (typeof userId === "string" || typeof userId === "number") && String(userId) ? String(userId) : null,
    email: typeof email === "string" ? email : null,
    roles: Object.freeze(names(lookup(claims, config.claims.roles))),
    groups: Object.freeze(names(lookup(claims, config.claims.groups))),
    anonymous: false,
  });
}

interface HttpAnswer {
  status: number;
  body: string;
}

function request(url: string, ca: Buffer | undefined, options: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const lib = target.protocol === "https:" ? https : http;
    const req = lib.request(
      target,
      { method: options.method ?? "GET", headers: options.headers, timeout: 5000, ...(ca ? { ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

async function getJson(url: string, ca: Buffer | undefined): Promise<unknown> {
  const answer = await request(url, ca, { headers: { accept: "application/json" } });
  if (answer.status < 200 || answer.status >= 300) throw new Error(`HTTP ${answer.status}`);
  return JSON.parse(answer.body) as unknown;
}

class KeySource {
  private keys: ReturnType<typeof createLocalJWKSet> | null = null;
  private kids = new Set<string>();
  private fetchedAt = -Infinity;
  private triedAt = -Infinity;
  private refreshing: Promise<void> | null = null;
  introspectionUrl: string | null;
  private jwksUrl: string | null;

  constructor(
    private readonly config: IssuerConfig,
    private readonly ca: Buffer | undefined,
  ) {
    this.jwksUrl = config.jwksUrl;
    this.introspectionUrl = config.introspectionUrl;
    if (config.jwks !== null) {
      const set = JSON.parse(config.jwks) as JSONWebKeySet;
      this.keys = createLocalJWKSet(set);
      this.fetchedAt = Infinity;
    }
  }

  private current(kid: string | null): boolean {
    if (this.keys === null) return false;
    if (this.config.jwks !== null) return true;
    if (Date.now() - this.fetchedAt > MAX_KEY_AGE_MS) return false;
    return kid === null || this.kids.has(kid);
  }

  async keysFor(kid: string | null): Promise<ReturnType<typeof createLocalJWKSet>> {
    if (!this.current(kid)) {
      if (this.refreshing === null && Date.now() - this.triedAt >= MIN_REFRESH_MS) {
        this.triedAt = Date.now();
        this.refreshing = this.refresh().finally(() => (this.refreshing = null));
      }
      if (this.refreshing !== null) await this.refreshing;
    }
    if (this.keys === null) throw new Unavailable("the token issuer's keys cannot be fetched");
    return this.keys;
  }

  private async discover(): Promise<string> {
    const url = this.config.discoveryUrl ?? this.config.issuer.replace(/\/+$/, "") + "/.well-known/openid-configuration";
    const doc = (await getJson(url, this.ca)) as Record<string, unknown>;
    if (typeof doc.introspection_endpoint === "string" && this.introspectionUrl === null) {
      this.introspectionUrl = doc.introspection_endpoint;
    }
    if (typeof doc.jwks_uri !== "string") throw new Error("the discovery document has no jwks_uri");
    this.jwksUrl = doc.jwks_uri;
    return doc.jwks_uri;
  }

  private async refresh(): Promise<void> {
    try {
      const url = this.jwksUrl ?? (await this.discover());
      const doc = (await getJson(url, this.ca)) as JSONWebKeySet;
      if (!doc || !Array.isArray(doc.keys)) throw new Error("not a key set");
      this.keys = createLocalJWKSet(doc);
      this.kids = new Set(doc.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string"));
      this.fetchedAt = Date.now();
    } catch (exc) {
      log.warn(
        `cannot fetch the token issuer's keys (${(exc as Error).name}); ${this.keys !== null ? "keeping the cached ones" : "no keys yet"}`,
      );
    }
  }
}

function numericDate(value: unknown): boolean {
  return typeof value === "number" && Number.isFinite(value);
}

/**
 * What `jwtVerify` leaves unchecked that the Python runtime (joserfc's claims registry) refuses, as
 * the reason, or null: `sub` a non-empty string, `iss` and `jti` strings, `aud` a string or a list of
 * strings, `exp`/`nbf`/`iat` finite numbers, and `iat` not in the future (beyond the leeway).
 */
export function claimProblem(claims: Record<string, unknown>, nowS: number): string | null {
  if (typeof claims.sub !== "string") return "the 'sub' claim must be a string";
  if (claims.sub === "") return "the 'sub' claim is empty";
  if ("iss" in claims && typeof claims.iss !== "string") return "the 'iss' claim must be a string";
  if ("jti" in claims && typeof claims.jti !== "string") return "the 'jti' claim must be a string";
  const aud = claims.aud;
  if ("aud" in claims && typeof aud !== "string" && !(Array.isArray(aud) && aud.every((a) => typeof a === "string"))) {
    return "the 'aud' claim must be a string or a list of strings";
  }
  for (const name of ["exp", "nbf", "iat"]) {
    if (name in claims && !numericDate(claims[name])) return `the '${name}' claim must be a number of seconds`;
  }
  if ("iat" in claims && (claims.iat as number) > nowS + LEEWAY_S) return "the token was issued in the future";
  return null;
}

/** Verifies the tokens of one issuer. */
export class TokenVerifier {
  private readonly keys: KeySource;
  private readonly verified = new Map<string, [UserContext, number]>();
  private readonly ca: Buffer | undefined;

  constructor(readonly config: IssuerConfig) {
    this.ca = config.caFile ? fs.readFileSync(config.caFile) : undefined;
    this.keys = new KeySource(config, this.ca);
  }

  async verify(authorization: string | undefined): Promise<UserContext> {
    const token = bearerToken(authorization);
    if (token === null) throw new Unauthenticated("this function requires a bearer token (authorization: Bearer <token>)");
    const known = this.verified.get(token);
    if (known !== undefined) {
      if (Date.now() < known[1]) return known[0];
      this.verified.delete(token);
    }
    const [user, expiresAt] = token.split(".").length === 3 ? await this.verifyJwt(token) : await this.introspect(token);
    this.verified.set(token, [user, expiresAt]);
    if (this.verified.size > CACHE_CAPACITY) this.verified.delete(this.verified.keys().next().value as string);
    return user;
  }

  private async verifyJwt(token: string): Promise<[UserContext, number]> {
    let header: { alg?: string; kid?: string };
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new Unauthenticated("the bearer token is not a well-formed JWT");
    }
    if (typeof header.alg !== "string" || !ALGORITHMS.includes(header.alg)) {
      throw new Unauthenticated(`the bearer token's algorithm '${String(header.alg).slice(0, 20)}' is not accepted`);
    }
    const keys = await this.keys.keysFor(typeof header.kid === "string" ? header.kid : null);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: ALGORITHMS,
        clockTolerance: LEEWAY_S,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (exc) {
      if (exc instanceof joseErrors.JWTExpired) throw new Unauthenticated("the bearer token has expired");
      if (exc instanceof joseErrors.JWTClaimValidationFailed) {
        throw new Unauthenticated(`the bearer token is not valid: ${exc.message}`);
      }
      if (exc instanceof joseErrors.JOSEError) {
        throw new Unauthenticated(`the bearer token's signature is not valid (${exc.code})`);
      }
      throw new Unauthenticated("the bearer token is not a well-formed JWT");
    }
    const problem = claimProblem(payload as Record<string, unknown>, Date.now() / 1000);
    if (problem !== null) throw new Unauthenticated(`the bearer token is not valid: ${problem}`);
    if (typeof payload.exp !== "number") throw new Unauthenticated("the bearer token has no expiry");
    return [userFromClaims(payload as Record<string, unknown>, this.config), payload.exp * 1000];
  }

  private async introspect(token: string): Promise<[UserContext, number]> {
    await this.keys.keysFor(null).catch(() => undefined); // discovery may name the introspection endpoint
    const url = this.keys.introspectionUrl;
    const clientId = this.config.clientId;
    if (url === null || clientId === null) {
      throw new Unauthenticated("the bearer token is not a JWT, and opaque tokens are not accepted here");
    }
    let answer: Record<string, unknown>;
    try {
      const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(this.config.clientSecret ?? "")}`).toString("base64");
      const reply = await request(url, this.ca, {
        method: "POST",
        body: new URLSearchParams({ token, token_type_hint: "access_token" }).toString(),
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${basic}`, accept: "application/json" },
      });
      if (reply.status < 200 || reply.status >= 300) throw new Error(`HTTP ${reply.status}`);
      answer = JSON.parse(reply.body) as Record<string, unknown>;
    } catch (exc) {
      throw new Unavailable(`the token issuer's introspection failed (${(exc as Error).name})`);
    }
    if (answer === null || typeof answer !== "object" || answer.active !== true) {
      throw new Unauthenticated("the bearer token is not active");
    }
    if ((answer.iss ?? this.config.issuer) !== this.config.issuer) {
      throw new Unauthenticated("the bearer token was issued by another issuer");
    }
    const aud = answer.aud;
    if (aud !== undefined && aud !== null && !(Array.isArray(aud) ? aud : [aud]).includes(this.config.audience)) {
      throw new Unauthenticated("the bearer token is meant for another audience");
    }
    const now = Date.now();
    let expiresAt = now + INTROSPECTION_MAX_AGE_MS;
    if (typeof answer.exp === "number") {
      if (answer.exp * 1000 <= now) throw new Unauthenticated("the bearer token has expired");
      expiresAt = Math.min(answer.exp * 1000, expiresAt);
    }
    return [userFromClaims(answer, this.config), expiresAt];
  }
}

/** Verifies the token of each call for one service. */
export class CallAuthenticator {
  constructor(
    readonly mode: AuthMode,
    readonly verifier: TokenVerifier | null,
  ) {}

  static fromEnv(mode: AuthMode): CallAuthenticator {
    const config = mode === "off" ? null : issuerFromEnv();
    return new CallAuthenticator(mode, config === null ? null : new TokenVerifier(config));
  }

  /** The caller of a call (its token removed from `headers`), or `Unauthenticated`. */
  async userOf(headers: Record<string, string>): Promise<UserContext> {
    const authorization = headers[PROP_AUTHORIZATION];
    delete headers[PROP_AUTHORIZATION];
    if (this.mode === "off" || authorization === undefined || !authorization.trim()) return ANONYMOUS;
    if (this.verifier === null) {
      throw new Unauthenticated(
        "this runtime has no identity provider configured (DORMANT_OIDC_ISSUER), so it cannot verify the call's token",
      );
    }
    return this.verifier.verify(authorization);
  }
}
