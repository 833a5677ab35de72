import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { COMMANDS, resolveDormantPath } from "../commands";

const root = path.join(__dirname, "..", "..");
const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));

test("package.json contributes exactly the commands the extension registers", () => {
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command).sort();
  assert.deepEqual(contributed, Object.values(COMMANDS).sort());
  const source = readFileSync(path.join(root, "src", "extension.ts"), "utf8");
  for (const [key, id] of Object.entries(COMMANDS)) {
    const inLoop = source.includes('for (const command of ["generate", "publish"] as const)') && ["generate", "publish"].includes(key);
    assert.ok(source.includes(`register(COMMANDS.${key},`) || inLoop, `${id} is not registered`);
  }
});

test("every setting is read by the extension", () => {
  const source = readFileSync(path.join(root, "src", "extension.ts"), "utf8");
  for (const key of Object.keys(manifest.contributes.configuration.properties)) {
    const name = key.replace(/^dormant\./, "");
    assert.ok(source.includes(`"${name}"`), `setting ${key} is never read`);
  }
});

test("the JSON validation points at the shipped meta-schema", () => {
  const [validation] = manifest.contributes.jsonValidation;
  assert.ok(validation.fileMatch.includes("**/schemas/*.json"));
  const schema = JSON.parse(readFileSync(path.join(root, validation.url), "utf8"));
  assert.equal(schema.$schema, "http://json-schema.org/draft-07/schema#");
});

test("the dormant executable: setting, then .venv, then PATH", () => {
  const none = (): boolean => false;
  assert.equal(resolveDormantPath("${workspaceFolder}/bin/dormant", "/w", none), "/w/bin/dormant");
  assert.equal(resolveDormantPath(" ", "/w", (p) => p === "/w/.venv/bin/dormant", "linux"), "/w/.venv/bin/dormant");
  assert.equal(resolveDormantPath("", "C:\\w", (p) => p === "C:\\w\\.venv\\Scripts\\dormant.exe", "win32"), "C:\\w\\.venv\\Scripts\\dormant.exe");
  assert.equal(resolveDormantPath(undefined, "/w", none), "dormant");
  assert.equal(resolveDormantPath(undefined, undefined, none), "dormant");
});
