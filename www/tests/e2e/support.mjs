// Shared by the browser end-to-end tests: the gateway process, MQTT.js watchers, Chromium.
import { spawn, execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";

export const root = resolve(import.meta.dirname, "../../..");
const require = createRequire(join(root, "package.json"));
export const { chromium } = require("playwright-core");
export const mqtt = require("mqtt");

export const BIN = process.env.SWITCHBOARD_BIN ?? join(root, "target/debug/switchboard");
export const DIST = process.env.SWITCHBOARD_DIST ?? join(root, "dist");
export const ARTIFACTS = join(root, "test-artifacts");
export const STEP_MS = 20_000;

/**
 * Starts `switchboard demo` on `mqttAddr` and `httpAddr` (port 0: any; a restart passes the
 * previous addresses), extra `args` appended; resolves with the process and its addresses.
 */
export function startGateway(dataDir, { mqttAddr = "127.0.0.1:0", httpAddr = "127.0.0.1:0", args = [] } = {}) {
  const child = spawn(
    BIN,
    ["demo", "--mqtt", mqttAddr, "--http", httpAddr, "--data-dir", dataDir, "--www", DIST, ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SWITCHBOARD_LOG: "info" } },
  );
  let log = "";
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`gateway did not start:\n${log}`)), STEP_MS);
    const seen = {};
    const onData = (chunk) => {
      log += chunk;
      for (const m of log.matchAll(/listening (mqtt|http)=(\S+)/g)) seen[m[1]] = m[2];
      if (seen.mqtt && seen.http) {
        clearTimeout(timer);
        ok({ child, mqtt: seen.mqtt, http: seen.http, log: () => log });
      }
    };
    child.stderr.on("data", onData);
    child.stdout.on("data", () => {});
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`gateway exited with ${code}:\n${log}`));
    });
  });
}

export function stopGateway(gw) {
  return new Promise((ok) => {
    if (gw.child.exitCode !== null) return ok();
    gw.child.removeAllListeners("exit");
    gw.child.on("exit", () => ok());
    gw.child.kill("SIGTERM");
    setTimeout(() => gw.child.kill("SIGKILL"), 5_000).unref();
  });
}

/** Runs `switchboard ARGS` to completion; returns its stdout. */
export function switchboard(args) {
  return execFileSync(BIN, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** An MQTT.js client over TCP recording every message it sees. */
export async function watcher(addr, filter = "#") {
  const client = mqtt.connect(`mqtt://${addr}`, { reconnectPeriod: 500, clientId: `e2e-${process.pid}-${Math.random()}` });
  const seen = [];
  client.on("message", (topic, payload, packet) => {
    seen.push({ topic, payload: payload.toString(), retain: packet.retain, at: Date.now() });
  });
  await new Promise((ok, fail) => {
    client.once("connect", ok);
    client.once("error", fail);
  });
  await client.subscribeAsync(filter);
  return { client, seen };
}

/** Waits for the first message matching `pred` in `w.seen` from index `from`. */
export async function waitMessage(w, pred, from = 0, timeout = STEP_MS) {
  const end = Date.now() + timeout;
  for (;;) {
    const m = w.seen.slice(from).find(pred);
    if (m) return m;
    if (Date.now() > end) throw new Error("message not seen");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls `f` until it returns a truthy value (returned) or `timeout` passes (throws `what`). */
export async function until(what, f, timeout = STEP_MS) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Headless Chromium with the flags this machine needs. */
export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/** The command topic and payload check of a device id, per family (DEVICES.md). */
export function commandOf(id, on) {
  const [family, key] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
  const word = on ? "ON" : "OFF";
  switch (family) {
    case "tasmota":
      return { topic: (t) => t === `cmnd/${key}/POWER` || t === `cmnd/${key}/POWER1`, payload: (p) => p.toUpperCase() === word };
    case "shelly-gen1":
      return { topic: (t) => t === `shellies/${key}/relay/0/command`, payload: (p) => p.toLowerCase() === word.toLowerCase() };
    case "shelly-gen2":
      return { topic: (t) => t === `${key}/rpc`, payload: (p) => JSON.parse(p).params?.on === on };
    case "z2m":
      return { topic: (t) => t === `zigbee2mqtt/${key}/set`, payload: (p) => JSON.parse(p).state?.toUpperCase() === word };
    default:
      return null;
  }
}
