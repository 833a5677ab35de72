// Unit tests of the claim checks the Node runtime adds after `jose`'s own, so that it refuses the same
// tokens as the Python runtime (joserfc's claims registry); the black-box side of the same rules is
// tests/conformance/test_identity.py. Run with `npm test` (node --test on the compiled files).
import assert from "node:assert/strict";
import { test } from "node:test";

import { bearerToken, claimProblem } from "../authn";
import { Unauthenticated } from "../errors";

const NOW = 1_800_000_000;
const GOOD = { iss: "https://idp", sub: "alice", aud: "dormant", exp: NOW + 60, nbf: NOW - 1, iat: NOW - 1, jti: "j" };

test("a token with well-typed claims has no problem", () => {
  assert.equal(claimProblem(GOOD, NOW), null);
  assert.equal(claimProblem({ ...GOOD, aud: ["other", "dormant"] }, NOW), null);
  assert.equal(claimProblem({ ...GOOD, iat: NOW + 5 }, NOW), null, "within the leeway");
  const { jti: _jti, nbf: _nbf, iat: _iat, ...bare } = GOOD;
  assert.equal(claimProblem(bare, NOW), null, "jti, nbf and iat are optional");
});

test("the claims the Python runtime refuses are refused", () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...GOOD, sub: 12345 }, /'sub' claim must be a string/],
    [{ ...GOOD, sub: "" }, /'sub' claim is empty/],
    [{ ...GOOD, sub: undefined }, /'sub' claim must be a string/],
    [{ ...GOOD, iss: 5 }, /'iss' claim must be a string/],
    [{ ...GOOD, jti: 5 }, /'jti' claim must be a string/],
    [{ ...GOOD, aud: ["dormant", 5] }, /'aud' claim must be a string or a list of strings/],
    [{ ...GOOD, exp: Infinity }, /'exp' claim must be a number/],
    [{ ...GOOD, nbf: "soon" }, /'nbf' claim must be a number/],
    [{ ...GOOD, iat: NOW + 6 }, /issued in the future/],
  ];
  for (const [claims, reason] of cases) assert.match(claimProblem(claims, NOW) ?? "(none)", reason);
});

test("only 'Bearer <token>' is a bearer token", () => {
  assert.equal(bearerToken(undefined), null);
  assert.equal(bearerToken("   "), null);
  assert.equal(bearerToken("bearer abc"), "abc");
  for (const bad of ["Bearer", "Basic abc", "Bearer two parts", "abc"]) {
    assert.throws(() => bearerToken(bad), Unauthenticated);
  }
});
