// MQTT.js (a third-party client) against the real `switchboard` binary over WebSocket.
//
// Started by `gateway/tests/mqttjs.rs`, which runs the gateway and passes its WebSocket URL in
// SWITCHBOARD_WS_URL. Every wait is for an event; a per-test timeout bounds it.

import { test } from "node:test";
import assert from "node:assert/strict";
import mqtt from "mqtt";

const URL = process.env.SWITCHBOARD_WS_URL;
if (!URL) {
  throw new Error("SWITCHBOARD_WS_URL is not set: run these through `cargo test -p switchboard --test mqttjs`");
}
const TIMEOUT = 10_000;

let seq = 0;
function clientId(name) {
  seq += 1;
  return `mqttjs-${name}-${process.pid}-${seq}`;
}

async function connect(version, name, extra = {}) {
  return mqtt.connectAsync(URL, {
    protocolVersion: version,
    clientId: clientId(name),
    reconnectPeriod: 0,
    connectTimeout: TIMEOUT,
    ...extra,
  });
}

// The next message on `topic`, as [topic, payload, packet].
function nextMessage(client, topic) {
  return new Promise((resolve) => {
    const onMessage = (t, payload, packet) => {
      if (t === topic) {
        client.off("message", onMessage);
        resolve([t, payload, packet]);
      }
    };
    client.on("message", onMessage);
  });
}

for (const version of [4, 5]) {
  const v = `v${version}`;

  test(`${v}: QoS 0, 1 and 2 round trips`, { timeout: TIMEOUT }, async () => {
    const client = await connect(version, "qos");
    assert.equal(client.options.protocolVersion, version);
    const granted = await client.subscribeAsync(`js/${v}/qos/#`, { qos: 2 });
    assert.equal(granted[0].qos, 2);
    for (const qos of [0, 1, 2]) {
      const topic = `js/${v}/qos/${qos}`;
      const received = nextMessage(client, topic);
      await client.publishAsync(topic, `payload at qos ${qos}`, { qos });
      const [, payload, packet] = await received;
      assert.equal(payload.toString(), `payload at qos ${qos}`);
      assert.equal(packet.qos, qos);
    }
    await client.endAsync();
  });

  test(`${v}: a retained message reaches a later subscriber`, { timeout: TIMEOUT }, async () => {
    const topic = `js/${v}/retained`;
    const publisher = await connect(version, "retain-pub");
    await publisher.publishAsync(topic, "kept", { qos: 1, retain: true });
    await publisher.endAsync();

    const subscriber = await connect(version, "retain-sub");
    const received = nextMessage(subscriber, topic);
    await subscriber.subscribeAsync(topic, { qos: 1 });
    const [, payload, packet] = await received;
    assert.equal(payload.toString(), "kept");
    assert.equal(packet.retain, true);
    // Clear it so reruns start empty.
    await subscriber.publishAsync(topic, "", { qos: 1, retain: true });
    await subscriber.endAsync();
  });

  test(`${v}: the will is published when a client vanishes`, { timeout: TIMEOUT }, async () => {
    const topic = `js/${v}/will`;
    const watcher = await connect(version, "will-watch");
    await watcher.subscribeAsync(topic, { qos: 1 });
    const doomed = await connect(version, "will-doomed", {
      will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false },
    });
    const received = nextMessage(watcher, topic);
    // Drop the WebSocket without DISCONNECT: the broker must publish the will.
    doomed.stream.destroy();
    const [, payload] = await received;
    assert.equal(payload.toString(), "gone");
    doomed.end(true);
    await watcher.endAsync();
  });
}

test("v5: properties survive the trip and CONNACK carries v5 fields", { timeout: TIMEOUT }, async () => {
  const client = await connect(5, "props", { properties: { sessionExpiryInterval: 0 } });
  const connack = client.connackPacket ?? null;
  if (connack) {
    assert.equal(connack.reasonCode ?? 0, 0);
  }
  await client.subscribeAsync("js/v5/props", { qos: 1 });
  const received = nextMessage(client, "js/v5/props");
  await client.publishAsync("js/v5/props", "with props", {
    qos: 1,
    properties: {
      userProperties: { plug: "kitchen" },
      contentType: "text/plain",
      responseTopic: "js/v5/reply",
    },
  });
  const [, payload, packet] = await received;
  assert.equal(payload.toString(), "with props");
  assert.deepEqual({ ...packet.properties.userProperties }, { plug: "kitchen" });
  assert.equal(packet.properties.contentType, "text/plain");
  assert.equal(packet.properties.responseTopic, "js/v5/reply");
  await client.endAsync();
});

test("v3.1.1 and v5 clients see each other's messages", { timeout: TIMEOUT }, async () => {
  const old = await connect(4, "mixed-old");
  const modern = await connect(5, "mixed-new");
  await old.subscribeAsync("js/mixed", { qos: 1 });
  const received = nextMessage(old, "js/mixed");
  await modern.publishAsync("js/mixed", "hello from v5", { qos: 1 });
  const [, payload] = await received;
  assert.equal(payload.toString(), "hello from v5");
  await Promise.all([old.endAsync(), modern.endAsync()]);
});

test("MQTT 3.1 (MQIsdp, subprotocol mqttv3.1) round trip", { timeout: TIMEOUT }, async () => {
  const client = await connect(3, "v31", { protocolId: "MQIsdp" });
  await client.subscribeAsync("js/v31", { qos: 1 });
  const received = nextMessage(client, "js/v31");
  await client.publishAsync("js/v31", "old but fine", { qos: 1 });
  const [, payload] = await received;
  assert.equal(payload.toString(), "old but fine");
  await client.endAsync();
});
