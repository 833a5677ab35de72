import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { TASK_COMMANDS, TaskDefinitionError, planTask, tasksForServices } from "../tasks";

const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));

test("package.json's task definition lists the commands planTask knows", () => {
  const [definition] = manifest.contributes.taskDefinitions;
  assert.equal(definition.type, "dormant");
  assert.deepEqual(definition.properties.command.enum, [...TASK_COMMANDS]);
});

test("generate and publish get the dormant problem matcher", () => {
  const plan = planTask({ type: "dormant", command: "generate", dir: "examples/greeter" });
  assert.deepEqual(plan.args, ["generate", "examples/greeter"]);
  assert.deepEqual(plan.problemMatchers, ["$dormant"]);
  assert.equal(plan.background, false);
  const publish = planTask({ type: "dormant", command: "publish", dir: "svc", args: ["--no-import-check"] });
  assert.deepEqual(publish.args, ["publish", "svc", "--no-import-check"]);
});

test("deploy, call and logs", () => {
  assert.deepEqual(planTask({ type: "dormant", command: "deploy", service: "greeter", args: ["--version", "2"] }).args, [
    "deploy",
    "greeter",
    "--version",
    "2",
  ]);
  assert.deepEqual(planTask({ type: "dormant", command: "call", target: "greeter.greet", input: { name: "Ann" } }).args, [
    "call",
    "greeter.greet",
    '{"name":"Ann"}',
  ]);
  assert.deepEqual(planTask({ type: "dormant", command: "call", target: "greeter.greet", input: '{"name": "B"}' }).args, [
    "call",
    "greeter.greet",
    '{"name":"B"}',
  ]);
  const logs = planTask({ type: "dormant", command: "logs", service: "greeter" });
  assert.deepEqual(logs.args, ["logs", "greeter", "--follow"]);
  assert.equal(logs.background, true);
});

test("bad definitions are refused with a reason", () => {
  const cases: [unknown, RegExp][] = [
    [{ type: "dormant", command: "generate" }, /needs "dir"/],
    [{ type: "dormant", command: "deploy", service: " " }, /needs "service"/],
    [{ type: "dormant", command: "call", target: "nodot" }, /not SERVICE\.FUNCTION/],
    [{ type: "dormant", command: "call", target: "a.b", input: "{x" }, /not valid JSON/],
    [{ type: "dormant", command: "deploy", service: "a", args: [1] }, /list of strings/],
    [{ type: "dormant", command: "rm" }, /unknown command "rm"/],
  ];
  for (const [definition, message] of cases) {
    assert.throws(() => planTask(definition as never), (e: unknown) => e instanceof TaskDefinitionError && message.test(e.message));
  }
});

test("tasks offered per service", () => {
  const tasks = tasksForServices([
    { dir: "new", name: undefined, functions: [] },
    { dir: "examples/greeter", name: "greeter", functions: [{ name: "greet", input: { type: "object", required: ["name"], properties: { name: { type: "string" } } } }] },
  ]);
  assert.deepEqual(
    tasks.map((t) => planTask(t).label),
    ["generate new", "publish new", "generate examples/greeter", "publish examples/greeter", "deploy greeter", "logs greeter", "call greeter.greet"],
  );
  assert.deepEqual(tasks.at(-1)?.input, { name: "Ann" });
});
