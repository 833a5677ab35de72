import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { DIAGNOSTIC_PATTERN, parseDiagnosticLine, parseDiagnostics } from "../diagnostics";

const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));

test("the problem matcher in package.json uses the module's pattern and groups", () => {
  const matchers = manifest.contributes.problemMatchers;
  assert.equal(matchers.length, 1);
  const [matcher] = matchers;
  assert.equal(matcher.name, "dormant");
  assert.equal(matcher.owner, "dormant");
  assert.deepEqual(matcher.fileLocation, ["autoDetect", "${workspaceFolder}"]);
  assert.deepEqual(matcher.pattern, {
    regexp: DIAGNOSTIC_PATTERN,
    file: 1,
    line: 2,
    column: 3,
    severity: 4,
    message: 5,
  });
});

test("a relative diagnostic with colons in its message", () => {
  assert.deepEqual(
    parseDiagnosticLine(
      "greeter/schemas/greeter.json:4:65: error: unknown schema keyword 'maxLenght' (did you mean 'maxLength'?): validators ignore unknown keywords",
    ),
    {
      file: "greeter/schemas/greeter.json",
      line: 4,
      column: 65,
      severity: "error",
      message: "unknown schema keyword 'maxLenght' (did you mean 'maxLength'?): validators ignore unknown keywords",
    },
  );
});

test("absolute POSIX and Windows paths, CRLF endings", () => {
  assert.equal(parseDiagnosticLine("/tmp/x/greeter.py:14:36: error: no schema")?.file, "/tmp/x/greeter.py");
  const windows = parseDiagnosticLine("C:\\work\\svc\\schemas\\a.json:1:25: error: invalid JSON: Expecting ','\r");
  assert.equal(windows?.file, "C:\\work\\svc\\schemas\\a.json");
  assert.equal(windows?.line, 1);
  assert.equal(windows?.column, 25);
  assert.equal(windows?.message, "invalid JSON: Expecting ','");
});

test("lines that are not diagnostics are skipped", () => {
  const out = [
    "stale: models.py",
    "error: generated code in x is stale; run `dormant generate x`",
    "svc/handler.py:3:1: warning: something",
    "generated svc/generated (abc123)",
    "",
  ].join("\n");
  const found = parseDiagnostics(out);
  assert.equal(found.length, 1);
  assert.equal(found[0].severity, "warning");
  assert.equal(found[0].file, "svc/handler.py");
});
