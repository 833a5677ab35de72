// The decorators register a service class and its functions where the runtime's loader finds them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Context, fn, service } from "../index";
import { registry } from "../registry";
import { clientIdFor } from "../main";
import { decodeCommand } from "../control";

test("@service and @fn fill the registry", () => {
  @service("reg-test")
  class RegTest {
    @fn("hello", { timeout: 5, roles: ["admin"] })
    async hello(input: { name: string }, _ctx: Context): Promise<{ text: string }> {
      return { text: `hi ${input.name}` };
    }
  }
  const found = registry().services.find((s) => s.name === "reg-test");
  assert.ok(found);
  assert.equal(found.cls, RegTest);
  assert.deepEqual(found.functions, [{ name: "hello", method: "hello", options: { timeout: 5, roles: ["admin"] } }]);
});

test("client ids as the Python runtime makes them", () => {
  assert.equal(clientIdFor("svc", 2, 0, "pod-1"), "dormant-svc-v2-s0");
  assert.equal(clientIdFor("svc", 2, null, "pod-1", false, 3), "dormant-svc-v2-pod-1-g3-vonly");
});

test("control commands", () => {
  const load = decodeCommand('{"cmd": "load", "app_dir": "/a", "service": "s", "version": 2, "slot": 1, "generation": 4, "max_concurrency": 0}');
  assert.ok(load !== null && load.cmd === "load");
  assert.equal(load.appDir, "/a");
  assert.equal(load.slot, 1);
  assert.equal(load.generation, 4);
  assert.equal(load.maxConcurrency, null);
  assert.deepEqual(decodeCommand('{"cmd": "drain"}'), { cmd: "drain" });
  assert.equal(decodeCommand("not json"), null);
  assert.equal(decodeCommand('{"cmd": "load", "version": 1}'), null);
});
