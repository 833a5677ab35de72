import assert from "node:assert/strict";
import { test } from "node:test";

import { checkCallInput, checkTarget, discoverServices, parseInterface, sampleInput, serviceDirOf } from "../services";

const INTERFACE = JSON.stringify({
  service: "greeter",
  functions: {
    httpGreet: { input: { type: "object", properties: { path: { type: "string" } }, required: ["path"] } },
    greet: {
      input: {
        type: "object",
        properties: { name: { type: "string" }, email: { type: "string", format: "email" }, n: { type: "integer", minimum: 5 } },
        required: ["name", "email", "n"],
      },
    },
  },
});

test("service directories from the files a service has", () => {
  assert.equal(serviceDirOf("examples/greeter/schemas/greeter.json"), "examples/greeter");
  assert.equal(serviceDirOf("examples/greeter/generated/interface.json"), "examples/greeter");
  assert.equal(serviceDirOf("schemas/a.json"), ".");
  assert.equal(serviceDirOf("examples\\greeter\\schemas\\a.json"), "examples/greeter");
  assert.equal(serviceDirOf("examples/greeter/greeter.py"), undefined);
  assert.equal(serviceDirOf("examples/greeter/schemas/nested/a.json"), undefined);
  assert.equal(serviceDirOf("codegen/vscode/node_modules/x/schemas/a.json"), undefined);
});

test("interface.json: name and functions sorted", () => {
  const parsed = parseInterface(INTERFACE);
  assert.equal(parsed?.name, "greeter");
  assert.deepEqual(parsed?.functions.map((f) => f.name), ["greet", "httpGreet"]);
  assert.equal(parseInterface("{"), undefined);
  assert.equal(parseInterface(JSON.stringify({ functions: {} })), undefined);
});

test("discovery merges schemas-only and generated services", () => {
  const files = [
    "b/schemas/x.json",
    "examples/greeter/schemas/greeter.json",
    "examples/greeter/generated/interface.json",
  ];
  const services = discoverServices(files, new Map([["examples/greeter/generated/interface.json", INTERFACE]]));
  assert.deepEqual(
    services.map((s) => [s.dir, s.name, s.functions.length]),
    [
      ["b", undefined, 0],
      ["examples/greeter", "greeter", 2],
    ],
  );
});

test("sample inputs fill required properties", () => {
  const greet = parseInterface(INTERFACE)?.functions[0];
  assert.deepEqual(sampleInput(greet?.input), { name: "Ann", email: "ann@example.com", n: 5 });
  assert.deepEqual(sampleInput({ enum: ["b", "a"] }), "b");
  assert.deepEqual(sampleInput({ type: ["null", "boolean"] }), true);
  assert.deepEqual(sampleInput(undefined), {});
});

test("call inputs must be JSON", () => {
  assert.deepEqual(checkCallInput(' { "a" : 1 } '), { ok: true, value: { a: 1 }, text: '{"a":1}' });
  assert.deepEqual(checkCallInput(""), { ok: true, value: {}, text: "{}" });
  const bad = checkCallInput("{a: 1}");
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.match(bad.error, /not valid JSON/);
});

test("call targets are SERVICE.FUNCTION", () => {
  assert.equal(checkTarget("user-service.createUser"), undefined);
  assert.match(checkTarget("greet") ?? "", /not SERVICE\.FUNCTION/);
  assert.match(checkTarget("Greeter.greet") ?? "", /not SERVICE\.FUNCTION/);
  assert.match(checkTarget("greeter.1x") ?? "", /not SERVICE\.FUNCTION/);
});
