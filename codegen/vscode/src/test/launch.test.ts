import assert from "node:assert/strict";
import { test } from "node:test";

import { DEBUG_SCRIPT_VARIABLE, debugFunctionConfiguration, debugTestsConfiguration, mergeLaunch, stripJsonc } from "../launch";

test("the TestClient debug configuration runs the shipped script", () => {
  const config = debugFunctionConfiguration("examples/greeter", "greet", '{"name":"Ann"}');
  assert.equal(config.type, "debugpy");
  assert.equal(config.request, "launch");
  assert.equal(config.program, DEBUG_SCRIPT_VARIABLE);
  assert.deepEqual(config.args, ["examples/greeter", "greet", '{"name":"Ann"}']);
  assert.equal(debugFunctionConfiguration("d", "f", "{}", "/abs/script.py").program, "/abs/script.py");
  const tests = debugTestsConfiguration("examples/greeter");
  assert.equal(tests.module, "pytest");
  assert.deepEqual(tests.args, ["-q", "examples/greeter"]);
});

test("merging replaces same-named configurations and keeps the rest", () => {
  const mine = debugTestsConfiguration("svc");
  const existing = {
    version: "0.2.0",
    configurations: [{ name: "Other", type: "node", request: "launch" }, { ...mine, args: ["old"] }],
    compounds: [],
  };
  const merged = mergeLaunch(existing, [mine]);
  assert.deepEqual(merged.configurations.map((c) => c.name), ["Other", mine.name]);
  assert.deepEqual(merged.configurations[1].args, ["-q", "svc"]);
  assert.deepEqual(merged.compounds, []);
  assert.deepEqual(mergeLaunch(undefined, [mine]), { version: "0.2.0", configurations: [mine] });
});

test("launch.json comments and trailing commas are stripped, strings kept", () => {
  const text = `{
    // a comment
    "version": "0.2.0", /* block */
    "configurations": [
      {"name": "url // not a comment", "x": "a,]", },
    ],
  }`;
  assert.deepEqual(JSON.parse(stripJsonc(text)), {
    version: "0.2.0",
    configurations: [{ name: "url // not a comment", x: "a,]" }],
  });
  assert.deepEqual(JSON.parse(stripJsonc('{"a": "q\\"//x", "b": 1}')), { a: 'q"//x', b: 1 });
});
