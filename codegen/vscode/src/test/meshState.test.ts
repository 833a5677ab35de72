import assert from "node:assert/strict";
import { test } from "node:test";

import { describeMesh, healthUrl, parseMeshRecord, redactUrl } from "../meshState";

const RECORD = {
  brokerUrl: "mqtts://developer:s3cret@127.0.0.1:41883?ca=/x/ca.pem",
  catalogUrl: "postgresql://dormant:pw@127.0.0.1:45432/dormant",
  layerStore: "/w/.dormant/dev/layers",
  service: "greeter",
  version: 3,
  pods: 2,
  replicas: 1,
  gatewayUrl: "http://127.0.0.1:8080",
  stateDir: "/w/.dormant/dev",
  tokenFile: "/w/.dormant/dev/dev-token",
  observability: { gateway: "http://127.0.0.1:8080/", controller: "http://127.0.0.1:9100", pods: {} },
};

test("no mesh.json: no dev mesh", () => {
  const read = parseMeshRecord(undefined);
  assert.deepEqual(read, { kind: "absent" });
  const view = describeMesh(read, "unknown");
  assert.equal(view.tone, "off");
  assert.match(view.text, /no dev mesh/);
});

test("a record as dormant dev writes it", () => {
  const read = parseMeshRecord(JSON.stringify(RECORD));
  assert.equal(read.kind, "record");
  if (read.kind !== "record") return;
  assert.equal(read.record.service, "greeter");
  assert.equal(read.record.version, 3);
  assert.equal(read.record.healthUrl, "http://127.0.0.1:8080/healthz");
  const view = describeMesh(read, "up");
  assert.equal(view.text, "$(pulse) Dormant: greeter v3 · 2 pods");
  assert.equal(view.tone, "ok");
  assert.match(view.tooltip, /2 pods, 1 replica\b/);
  assert.ok(!view.tooltip.includes("s3cret"), "the broker password must not be shown");
  assert.ok(!view.tooltip.includes(":pw@"), "the catalog password must not be shown");
  assert.match(view.tooltip, /developer:\*\*\*@/);
});

test("a record whose gateway does not answer is a warning", () => {
  const view = describeMesh(parseMeshRecord(JSON.stringify(RECORD)), "down");
  assert.equal(view.tone, "warning");
  assert.match(view.text, /greeter v3 \(not answering\)/);
  assert.match(view.tooltip, /http:\/\/127\.0\.0\.1:8080\/healthz/);
});

test("unreadable records say why", () => {
  for (const [text, reason] of [
    ["{", /not JSON/],
    ["[1]", /JSON object/],
    [JSON.stringify({ version: 1 }), /names no service/],
  ] as const) {
    const read = parseMeshRecord(text);
    assert.equal(read.kind, "invalid");
    if (read.kind === "invalid") assert.match(read.reason, reason);
    assert.equal(describeMesh(read, "unknown").tone, "warning");
  }
});

test("fields of the wrong kind are left out, not trusted", () => {
  const read = parseMeshRecord(JSON.stringify({ service: "s", version: "3", pods: 1.5, gatewayUrl: "ftp://x" }));
  assert.equal(read.kind, "record");
  if (read.kind !== "record") return;
  assert.equal(read.record.version, undefined);
  assert.equal(read.record.pods, undefined);
  assert.equal(read.record.healthUrl, undefined);
  assert.equal(describeMesh(read, "unknown").text, "$(pulse) Dormant: s");
});

test("health and redaction helpers", () => {
  assert.equal(healthUrl("https://h:1//"), "https://h:1/healthz");
  assert.equal(healthUrl(undefined), undefined);
  assert.equal(redactUrl("mqtt://u:p@h:1"), "mqtt://u:***@h:1");
  assert.equal(redactUrl("mqtt://h:1883"), "mqtt://h:1883");
});
