// Unit tests of the pure parts of the Node runtime: wire decoding, reply topics, deadlines, callId text,
// canonical JSON. Run with `npm test` (node --test on the compiled files).
import assert from "node:assert/strict";
import { test } from "node:test";

import { ValidationError } from "../errors";
import { floatText, parseJson } from "../json";
import { type Call, CallRejected, callIdText, decodeCall, encodeResponse, parseDeadline, replyExpiry, replyTopicProblem } from "../wire";

function rejected(fn: () => unknown): CallRejected {
  try {
    fn();
  } catch (exc) {
    assert.ok(exc instanceof CallRejected, `expected CallRejected, got ${String(exc)}`);
    return exc;
  }
  assert.fail("expected a rejection");
}

const NOW = 1_700_000_000_000;

test("a native call: params, callId from correlation data, headers, deadline", () => {
  const call = decodeCall(
    {
      topic: "service/svc/v3/echo",
      payload: Buffer.from('{"b": 1.0, "a": [1, "x"]}'),
      responseTopic: "reply/me/inbox",
      correlationData: Buffer.from("call-1"),
      userProperties: { deadline: ["1700000009000", "1700000005000"], "x-probe": "p", traceparent: "bad" },
      messageExpiryInterval: 3,
    },
    NOW,
  );
  assert.equal(call.service, "svc");
  assert.equal(call.function, "echo");
  assert.equal(call.version, 3);
  assert.equal(call.callId, "call-1");
  assert.equal(call.callIdGiven, true);
  assert.equal(call.replyTo, "reply/me/inbox");
  assert.equal(call.deadline, NOW + 3000); // the earliest of the deadlines and arrival + expiry
  assert.deepEqual(call.headers, { "x-probe": "p" }); // a malformed traceparent is dropped
  assert.deepEqual(call.params, { b: 1, a: [1, "x"] });
  assert.equal(call.canonical, '{"a":[1,"x"],"b":1.0}');
});

test("callIds as text: printable ASCII as is, anything else as hex", () => {
  assert.equal(callIdText(Buffer.from("abc 123")), "abc 123");
  assert.equal(callIdText(Buffer.from([0, 1, 255])), "0001ff");
  assert.equal(callIdText(Buffer.from("é")), "c3a9");
  assert.equal(callIdText(Buffer.alloc(201, 0x61)), "61".repeat(201));
  assert.match(callIdText(Buffer.alloc(300, 0x61)), /^oversized-[0-9a-f]{32}$/);
});

test("deadline user property: 1 to 15 ASCII digits", () => {
  assert.equal(parseDeadline("1700000000000"), 1700000000000);
  for (const bad of ["", "-1", "1.5", "1e12", "+12", "１２", "1" + "0".repeat(15), "1" + "0".repeat(400)]) {
    assert.throws(() => parseDeadline(bad), ValidationError, bad);
  }
  const call = rejected(() =>
    decodeCall({ topic: "service/svc/echo", payload: Buffer.from("{}"), responseTopic: "reply/a", userProperties: { deadline: "1e3" } }),
  ).call;
  assert.equal(call.replyTo, "reply/a"); // a malformed deadline is answered
});

test("reply topic rules", () => {
  assert.equal(replyTopicProblem("reply/a/b"), null);
  for (const bad of ["service/x/y", "reply", "reply/", "reply//x", "reply/x/", "reply/+", "reply/#", "reply/a\u0000", "reply/\u0085", "reply/" + "x".repeat(1020), "mesh/stats/x"]) {
    assert.notEqual(replyTopicProblem(bad), null, bad);
  }
  // Refused: nobody answered, whatever else is wrong with the call.
  const refused = rejected(() => decodeCall({ topic: "service/svc/echo", payload: Buffer.from("{}"), responseTopic: "reply/+" }));
  assert.equal(refused.call.replyTo, null);
  assert.match(refused.error.message, /refused reply topic/);
});

test("bad input: typed errors, never anything else", () => {
  const cases: [Parameters<typeof decodeCall>[0], string, RegExp][] = [
    [{ topic: "service/svc/echo", payload: Buffer.from("[1]") }, "ValidationError", /must be a JSON object, got an array/],
    [{ topic: "service/svc/echo", payload: Buffer.from("{") }, "ValidationError", /not valid JSON/],
    [{ topic: "service/svc/echo", payload: Buffer.from("") }, "ValidationError", /got null/],
    [{ topic: "service/svc/echo", payload: Buffer.from('{"a": 1e400}') }, "ValidationError", /not valid JSON/],
    [{ topic: "service/svc/echo", payload: Buffer.from([0x7b, 0xff, 0x7d]) }, "ValidationError", /not valid JSON/],
    [{ topic: "service/svc/echo", payload: Buffer.from('{"a": "\\ud800"}') }, "ValidationError", /not valid JSON/],
    [{ topic: "other/x", payload: Buffer.from("{}") }, "NotFound", /not a service topic/],
    [{ topic: "service/svc/echo", payload: Buffer.alloc(6 * 1024 * 1024 + 1, 0x20) }, "ValidationError", /byte limit/],
    [{ topic: "service/svc/echo", payload: Buffer.from("{}"), correlationData: Buffer.alloc(257, 1) }, "ValidationError", /at most 256 bytes/],
    [{ topic: "service/svc", payload: Buffer.from('{"body": {"function": 3}}') }, "ValidationError", /needs "body"/],
    [{ topic: "service/svc", payload: Buffer.from('{"callId": 7, "body": {"function": "f"}}') }, "ValidationError", /"callId" must be a string/],
    [{ topic: "service/svc", payload: Buffer.from('{"headers": [], "body": {"function": "f"}}') }, "ValidationError", /"headers" must be an object/],
  ];
  for (const [message, type, pattern] of cases) {
    const error = rejected(() => decodeCall(message)).error;
    assert.equal(error.type, type, String(pattern));
    assert.match(error.message, pattern);
  }
  const tooLong = rejected(() => decodeCall({ topic: "service/svc/echo", payload: Buffer.from("{}"), correlationData: Buffer.alloc(300, 1) }));
  assert.deepEqual(tooLong.error.details, { limit: 256, size: 300 });
});

test("the envelope form: fields, replyTo over the Response Topic, and the answer's shape", () => {
  const call: Call = decodeCall({
    topic: "service/svc",
    payload: Buffer.from(
      JSON.stringify({ messageId: "m1", callId: "c1", replyTo: "reply/r", headers: { "X-A": "1", n: 2 }, body: { function: "f", parameters: { z: 1, a: 2 } } }),
    ),
    responseTopic: "service/not/allowed",
  });
  assert.equal(call.envelope, true);
  assert.equal(call.replyTo, "reply/r");
  assert.equal(call.callId, "c1");
  assert.deepEqual(call.headers, { "x-a": "1" });
  assert.equal(call.canonical, '{"a":2,"z":1}');
  const answer = JSON.parse(encodeResponse(call, true, '{"ok":1}'));
  assert.equal(answer.callId, "c1");
  assert.equal(answer.inReplyTo, "m1");
  assert.deepEqual(answer.headers, { "content-type": "application/json", status: "ok" });
  assert.deepEqual(answer.body, { ok: 1 });
  // A replyTo that is not a string means nobody is answered, even with a valid Response Topic.
  const refused = rejected(() =>
    decodeCall({ topic: "service/svc", payload: Buffer.from('{"replyTo": 5, "body": {"function": "f"}}'), responseTopic: "reply/ok" }),
  );
  assert.equal(refused.call.replyTo, null);
});

test("answer expiry follows the caller's deadline", () => {
  assert.equal(replyExpiry(null, NOW), undefined);
  assert.equal(replyExpiry(NOW + 2500, NOW), 3);
  assert.equal(replyExpiry(NOW - 5000, NOW), 1);
});

test("canonical JSON in orjson's notation", () => {
  const cases: [number, string][] = [
    [1, "1.0"], [1e15, "1000000000000000.0"], [1e16, "1e+16"], [1.5e-7, "1.5e-7"], [1e-5, "0.00001"],
    [1e-6, "1e-6"], [0.1, "0.1"], [-0, "-0.0"], [1.2345678901234569e23, "1.2345678901234569e+23"], [5e-324, "5e-324"],
  ];
  for (const [value, text] of cases) assert.equal(floatText(value), text, text);
  assert.equal(parseJson('{"b":[1,1.0,-0],"a":{"\\ud83d\\ude00":1,"\\uffff":2}}').text, '{"a":{"\uffff":2,"\ud83d\ude00":1},"b":[1,1.0,0]}');
  assert.equal(parseJson("18446744073709551616").text, "1.8446744073709552e+19");
});
