// Thin ES module wrapper: loads the wasm once, then hands out MQTT.js-shaped clients.
import init, { connect as connectWasm, MqttClient } from "./switchboard_client.js";

let ready;

/** Connects to `url` (or an array of URLs tried in turn); see index.d.ts. */
export async function connect(url, options) {
  ready ??= init();
  await ready;
  return connectWasm(url, options ?? {});
}

// MQTT.js style chaining: client.on(...).on(...).
for (const name of ["on", "off"]) {
  const method = MqttClient.prototype[name];
  MqttClient.prototype[name] = function (event, listener) {
    method.call(this, event, listener);
    return this;
  };
}

export { MqttClient };
