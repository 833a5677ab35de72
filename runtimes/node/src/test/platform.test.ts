// The platform interfaces outside the database: ids as Python derives them, refusals before any statement.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ANONYMOUS } from "../context";
import { SystemError, Unavailable, ValidationError } from "../errors";
import { RuntimePlatform, childCallId } from "../platform";

test("child callIds are dormant.callid.child_call_id's", () => {
  // python -c "from dormant.callid import child_call_id; print(child_call_id('call-1', 'event:notifications', 1))"
  assert.equal(childCallId("call-1", "event:notifications", 1), "c-b66dfae05e9e3c7e8c7c609147c1a13a");
  assert.equal(childCallId("call-1", "event:notifications", 2), "c-e738bd381390a9017951726924bd057f");
});

test("the interfaces refuse use outside a call", async () => {
  const platform = new RuntimePlatform();
  await assert.rejects(platform.interfaces.data.getById("users", "u1"), SystemError);
  await assert.rejects(platform.interfaces.messaging.send("notifications", {}), SystemError);
});

test("a runtime without a database answers DataStore use with Unavailable", async () => {
  const platform = new RuntimePlatform();
  const scope = platform.scope({ callId: "c1", service: "svc", user: ANONYMOUS, deadline: Date.now() + 1000 });
  await platform.run(scope, async () => {
    await assert.rejects(platform.interfaces.data.insert("users", { a: 1 }), Unavailable);
    await assert.rejects(platform.interfaces.authorizer.assignPermissions("bob", ["read"], "svc", "users"), Unavailable);
  });
});

test("bad names, values, filters and headers are ValidationErrors before any statement", async () => {
  const platform = new RuntimePlatform();
  const scope = platform.scope({ callId: "c1", service: "svc", user: ANONYMOUS, deadline: Date.now() + 1000 });
  const sent: string[] = [];
  platform.usePublisher(async (topic) => {
    sent.push(topic);
  });
  await platform.run(scope, async () => {
    const { data, messaging } = platform.interfaces;
    await assert.rejects(data.insert("Users", {}), ValidationError);
    await assert.rejects(data.getById("users", "-bad"), ValidationError);
    await assert.rejects(data.insert("users", { n: Number.NaN }), ValidationError);
    await assert.rejects(data.update("users", "u1", { id: "other" }), ValidationError);
    await assert.rejects(data.query("users", { age: { $gt: 3 } }), ValidationError);
    await assert.rejects(data.query("users", { age: { $eq: 3, x: 1 } }), ValidationError);
    await assert.rejects(data.query("users", {}, { pageSize: 1001 }), ValidationError);
    await assert.rejects(data.query("users", {}, { sort: [["name", "asc"]] } as never), ValidationError);
    await assert.rejects(messaging.send("svc.fn", {}), ValidationError);
    await assert.rejects(messaging.send("bad name", {}), ValidationError);
    await assert.rejects(messaging.send("notifications", {}, { "User-Id": "mallory" }), ValidationError);
    assert.deepEqual(sent, []);
    assert.equal(await messaging.send("notifications", { ok: true }), childCallId("c1", "event:notifications", 1));
    assert.deepEqual(sent, ["events/notifications"]);
  });
});
