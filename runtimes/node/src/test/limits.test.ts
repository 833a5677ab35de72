import { strict as assert } from "node:assert";
import { test } from "node:test";

import { MemoryExceeded, MemoryLimit } from "../limits";

const MIB = 1024 * 1024;

test("the limit is what the process held when it was set, plus memoryMb", () => {
  let rss = 100 * MIB;
  const limit = new MemoryLimit(64, () => rss);
  assert.equal(limit.limitBytes, 164 * MIB);
  rss = 160 * MIB;
  assert.equal(limit.check(), false);
  rss = 170 * MIB;
  assert.equal(limit.check(), true);
  rss = 120 * MIB; // once past it, the process stays marked: it must end
  assert.equal(limit.check(), true);
  assert.equal(limit.peakRssMb, 170);
});

test("a call racing the cutoff is rejected when the limit is crossed, and a later one at once", async () => {
  let rss = 10 * MIB;
  const limit = new MemoryLimit(1, () => rss);
  const first = limit.cutoff();
  rss = 20 * MIB;
  limit.check();
  await assert.rejects(first.promise, MemoryExceeded);
  await assert.rejects(limit.cutoff().promise, MemoryExceeded);
});

test("a released cutoff is not rejected", async () => {
  let rss = 10 * MIB;
  const limit = new MemoryLimit(1, () => rss);
  const call = limit.cutoff();
  call.release();
  rss = 20 * MIB;
  limit.check();
  const settled = await Promise.race([call.promise.then(() => "resolved", () => "rejected"), new Promise((r) => setTimeout(() => r("pending"), 20))]);
  assert.equal(settled, "pending");
});
