// End-to-end test of the wasm MQTT client (client-wasm/pkg) in headless Chromium against a
// real broker: `switchboard serve` by default, or Mosquitto with a websockets listener when
// E2E_BROKER=mosquitto.
//
//   client-wasm/build.sh                    # makes client-wasm/pkg
//   cargo build -p switchboard-gateway      # makes target/debug/switchboard
//   node --test client-wasm/tests/e2e/      # from /work/main
//
// Env: SWITCHBOARD_BIN (default target/debug/switchboard), E2E_BROKER (switchboard|mosquitto),
// CHROMIUM (default /usr/bin/chromium), E2E_PKG (default client-wasm/pkg).
//
// The page imports the package like any web page would; the test drives it with
// page.evaluate and waits on events (never fixed sleeps, except where the point is to show
// that nothing arrives). A third-party client (MQTT.js over TCP) cross-checks delivery.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import mqtt from "mqtt";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const BIN = path.resolve(root, process.env.SWITCHBOARD_BIN ?? "target/debug/switchboard");
const BROKER = process.env.E2E_BROKER ?? "switchboard";
const PKG = path.resolve(root, process.env.E2E_PKG ?? "client-wasm/pkg");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>switchboard-client e2e</title>
<script type="module">
import { connect } from "./pkg/index.js";
const clients = {};
const waiters = new Set();
const notify = () => { for (const w of [...waiters]) w(); };
// Resolves when pred() is true, re-checked on every client event; rejects after ms.
window.until = (pred, ms = 8000, what = "condition") => new Promise((resolve, reject) => {
  const check = () => { if (pred()) { waiters.delete(check); clearTimeout(t); resolve(); } };
  const t = setTimeout(() => { waiters.delete(check); reject(new Error("timed out waiting for " + what)); }, ms);
  waiters.add(check);
  check();
});
window.open_ = async (name, url, options) => {
  const c = await connect(url, options);
  const rec = { c, msgs: [], events: [] };
  c.on("message", (topic, payload, packet) => {
    rec.msgs.push({ topic, payload: new TextDecoder().decode(payload), qos: packet.qos,
      retain: packet.retain, dup: packet.dup, props: packet.properties ?? null });
    notify();
  });
  for (const e of ["connect", "reconnect", "offline", "waiting", "close", "error", "end"]) {
    c.on(e, (a) => {
      let arg = a;
      if (a instanceof Error) arg = a.code;
      else if (a && typeof a === "object") arg = "sessionPresent" in a ? { sessionPresent: a.sessionPresent } : { ...a };
      rec.events.push({ e, arg });
      notify();
    });
  }
  clients[name] = rec;
  return { clientId: c.clientId, timerMode: c.timerMode, connected: c.connected };
};
window.cl = (name) => clients[name];
// Runs a promise and reports its outcome as data (resolved, or the error code).
window.outcome = async (p) => {
  const start = performance.now();
  try { const v = await p; return { ok: true, v, ms: performance.now() - start }; }
  catch (e) { return { ok: false, code: e.code, message: String(e.message), ms: performance.now() - start }; }
};
window.ready = true;
</script>`;

async function freePort() {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

/** Spawns `cmd`, keeping its stderr in `proc.log`. */
function spawnLogged(cmd, args, env = process.env) {
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env });
  proc.log = "";
  proc.stdout.resume();
  proc.stderr.on("data", (c) => { proc.log += c.toString(); });
  return proc;
}

/** Resolves with the match once `re` appears in the process's log; rejects on exit/timeout. */
function waitLog(proc, re, ms = 20000) {
  return new Promise((resolve, reject) => {
    const done = (f, v) => { clearTimeout(t); proc.stderr.off("data", check); proc.off("exit", onExit); f(v); };
    const check = () => { const m = proc.log.match(re); if (m) done(resolve, m); };
    const onExit = () => setImmediate(() => { check(); done(reject, new Error(`exited before ${re}:\n${proc.log}`)); });
    const t = setTimeout(() => done(reject, new Error(`no ${re} in:\n${proc.log}`)), ms);
    proc.stderr.on("data", check);
    proc.on("exit", onExit);
    check();
  });
}

/** The broker under test: start(), stop() (SIGKILL), and the same ports on restart. */
class Broker {
  /** `env`: extra environment for `switchboard serve` (configuration overrides). */
  constructor(www, env = {}) {
    this.www = www;
    this.env = env;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-e2e-data-"));
    this.proc = null;
    this.httpAddr = null; // host:port of the WebSocket (and, for switchboard, the page)
    this.mqttAddr = null; // host:port of MQTT over TCP
  }

  get wsUrl() {
    return BROKER === "mosquitto" ? `ws://${this.httpAddr}/` : `ws://${this.httpAddr}/mqtt`;
  }

  async start() {
    if (BROKER === "mosquitto") return this.startMosquitto();
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info", NO_COLOR: "1", ...this.env };
    for (let attempt = 0; ; attempt++) {
      const args = ["serve", "--mqtt", this.mqttAddr ?? "127.0.0.1:0", "--http",
        this.httpAddr ?? "127.0.0.1:0", "--data-dir", this.dir, "--www", this.www];
      this.proc = spawnLogged(BIN, args, env);
      try {
        this.httpAddr = (await waitLog(this.proc, /listening http=([\d.]+:\d+)/))[1];
        const m = this.proc.log.match(/listening mqtt=([\d.]+:\d+)/);
        if (m) this.mqttAddr = m[1];
        return;
      } catch (e) {
        // Right after a kill the port may still be held: retry.
        await this.stop();
        if (attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async startMosquitto() {
    this.httpAddr ??= `127.0.0.1:${await freePort()}`;
    this.mqttAddr ??= `127.0.0.1:${await freePort()}`;
    const conf = path.join(this.dir, "mosquitto.conf");
    fs.writeFileSync(conf, [
      `listener ${this.httpAddr.split(":")[1]} 127.0.0.1`, "protocol websockets",
      `listener ${this.mqttAddr.split(":")[1]} 127.0.0.1`, "protocol mqtt",
      "allow_anonymous true", "persistence false", "",
    ].join("\n"));
    for (let attempt = 0; ; attempt++) {
      this.proc = spawnLogged("mosquitto", ["-c", conf, "-v"]);
      try {
        await waitLog(this.proc, /running/i);
        return;
      } catch (e) {
        await this.stop();
        if (attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = once(this.proc, "exit");
    this.proc.kill("SIGKILL");
    await exited;
  }
}

/**
 * A TCP proxy in front of the broker's WebSocket port, to break the client's connection while
 * the broker stays up: `blackhole` drops broker-to-client bytes (acks get lost), `down`
 * refuses new connections, `cut()` drops every connection.
 */
class Proxy {
  constructor(targetAddr) {
    const [host, port] = targetAddr.split(":");
    this.target = { host, port: Number(port) };
    this.conns = new Set();
    this.blackhole = false;
    this.down = false;
    this.rewrite = null; // (Buffer) => Buffer, applied to broker-to-client bytes when set
  }

  async listen() {
    this.server = net.createServer((c) => {
      if (this.down) { c.destroy(); return; }
      const u = net.connect(this.target);
      const pair = { c, u };
      this.conns.add(pair);
      c.on("data", (d) => u.write(d));
      u.on("data", (d) => { if (!this.blackhole) c.write(this.rewrite ? this.rewrite(d) : d); });
      const close = () => { c.destroy(); u.destroy(); this.conns.delete(pair); };
      for (const s of [c, u]) { s.on("close", close); s.on("error", close); }
    });
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return `127.0.0.1:${this.server.address().port}`;
  }

  cut() {
    for (const { c, u } of this.conns) { c.destroy(); u.destroy(); }
    this.conns.clear();
  }

  close() { this.cut(); this.server?.close(); }
}

let broker, browser, page, pageServer, tcp, proxy;
const www = fs.mkdtempSync(path.join(os.tmpdir(), "sb-e2e-www-"));

before(async () => {
  assert.ok(fs.existsSync(path.join(PKG, "index.js")), `${PKG} missing: run client-wasm/build.sh`);
  fs.cpSync(PKG, path.join(www, "pkg"), { recursive: true });
  fs.writeFileSync(path.join(www, "index.html"), PAGE);
  fs.writeFileSync(path.join(www, "client-e2e.html"), PAGE);
  // The same page under a CSP that forbids workers: the keep-alive timer must fall back.
  fs.writeFileSync(path.join(www, "client-csp.html"),
    PAGE.replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"worker-src 'none'\">"));
  fs.copyFileSync(path.join(root, "client-wasm/examples/index.html"), path.join(www, "example.html"));
  broker = new Broker(www);
  await broker.start();
  let pageUrl;
  if (BROKER === "mosquitto") {
    // Mosquitto serves no files: a tiny static server for the page and the package.
    pageServer = http.createServer((req, res) => {
      const file = path.join(www, decodeURIComponent(new URL(req.url, "http://x").pathname));
      if (!file.startsWith(www) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
        res.writeHead(404).end();
        return;
      }
      const type = file.endsWith(".wasm") ? "application/wasm" : file.endsWith(".js") ? "text/javascript" : "text/html";
      res.writeHead(200, { "content-type": type }).end(fs.readFileSync(file));
    });
    pageServer.listen(0, "127.0.0.1");
    await once(pageServer, "listening");
    pageUrl = `http://127.0.0.1:${pageServer.address().port}/client-e2e.html`;
  } else {
    pageUrl = `http://${broker.httpAddr}/client-e2e.html`;
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  page.on("console", (m) => { if (m.type() === "error") console.error("console:", m.text()); });
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.ready === true);
});

after(async () => {
  proxy?.close();
  await tcp?.endAsync?.().catch(() => {});
  await browser?.close();
  await broker?.stop();
  pageServer?.close();
  fs.rmSync(www, { recursive: true, force: true });
  if (broker) fs.rmSync(broker.dir, { recursive: true, force: true });
});

const OPTS = { keepalive: 10, reconnectPeriod: 100, maxReconnectPeriod: 400, offlineExpiry: 1500 };

test("connects with a random per-tab client id and a worker timer", async () => {
  const info = await page.evaluate(([url, o]) => open_("a", url, o), [broker.wsUrl, OPTS]);
  assert.match(info.clientId, /^sb-[0-9a-z]{12}$/);
  assert.equal(info.timerMode, "worker");
  assert.equal(info.connected, true);
  const other = await page.evaluate(([url, o]) => open_("b", url, o), [broker.wsUrl, OPTS]);
  assert.notEqual(other.clientId, info.clientId);
});

test("QoS 0, 1 and 2 round trips", async () => {
  const r = await page.evaluate(async () => {
    const a = cl("a");
    const granted = await a.c.subscribe("e2e/rt/#", { qos: 2 });
    const outs = [];
    for (const qos of [0, 1, 2]) outs.push(await outcome(a.c.publish(`e2e/rt/${qos}`, `m${qos}`, { qos })));
    await until(() => a.msgs.filter((m) => m.topic.startsWith("e2e/rt/")).length >= 3, 5000, "3 messages");
    return { granted, outs, msgs: a.msgs.filter((m) => m.topic.startsWith("e2e/rt/")) };
  });
  assert.deepEqual(r.granted, [{ topic: "e2e/rt/#", qos: 2 }]);
  assert.deepEqual(r.outs.map((o) => o.ok), [true, true, true]);
  const got = r.msgs.map((m) => [m.topic, m.payload, m.qos]).sort();
  assert.deepEqual(got, [["e2e/rt/0", "m0", 0], ["e2e/rt/1", "m1", 1], ["e2e/rt/2", "m2", 2]]);
});

test("unsubscribe stops delivery for that filter only", async () => {
  const r = await page.evaluate(async () => {
    const a = cl("a");
    await a.c.subscribe(["e2e/unsub/x", "e2e/unsub/y"], { qos: 1 });
    await a.c.unsubscribe(["e2e/unsub/x"]);
    await a.c.publish("e2e/unsub/x", "x", { qos: 1 });
    await a.c.publish("e2e/unsub/y", "y", { qos: 1 });
    await until(() => a.msgs.some((m) => m.topic === "e2e/unsub/y"), 5000, "y");
    return a.msgs.filter((m) => m.topic.startsWith("e2e/unsub/")).map((m) => m.payload);
  });
  assert.deepEqual(r, ["y"]);
});

test("binary payloads round trip byte for byte", async () => {
  const ok = await page.evaluate(async () => {
    const a = cl("a");
    const bytes = new Uint8Array(256).map((_, i) => i);
    let got = null;
    const done = new Promise((res) => a.c.on("message", (t, p) => { if (t === "e2e/rt/bin") { got = p; res(); } }));
    await a.c.publish("e2e/rt/bin", bytes, { qos: 1 });
    await done;
    return got.length === 256 && got.every((b, i) => b === i);
  });
  assert.equal(ok, true);
});

test("retained message delivered on subscribe", async () => {
  const r = await page.evaluate(async () => {
    const a = cl("a"), b = cl("b");
    await a.c.publish("e2e/retained/plug1", "on", { qos: 1, retain: true });
    await b.c.subscribe("e2e/retained/+", { qos: 1 });
    await until(() => b.msgs.some((m) => m.topic === "e2e/retained/plug1"), 5000, "retained");
    return b.msgs.filter((m) => m.topic === "e2e/retained/plug1");
  });
  assert.equal(r.length, 1);
  assert.equal(r[0].payload, "on");
  assert.equal(r[0].retain, true);
});

test("QoS 2 from a third-party client is delivered exactly once", async (t) => {
  if (!broker.mqttAddr) return t.skip("broker exposes no MQTT/TCP address");
  tcp = await mqtt.connectAsync(`mqtt://${broker.mqttAddr}`, { clientId: "e2e-mqttjs", clean: true });
  await page.evaluate(() => cl("b").c.subscribe("e2e/q2/#", { qos: 2 }));
  const N = 20;
  for (let i = 0; i < N; i++) await tcp.publishAsync("e2e/q2/x", `n${i}`, { qos: 2 });
  const msgs = await page.evaluate(async (n) => {
    const b = cl("b");
    await until(() => b.msgs.filter((m) => m.topic === "e2e/q2/x").length >= n, 8000, "qos2 messages");
    // Same publisher, same session: a PUBLISH after the batch marks the end of the stream.
    await cl("a").c.publish("e2e/q2/end", "end", { qos: 2 });
    await until(() => b.msgs.some((m) => m.topic === "e2e/q2/end"), 5000, "end marker");
    return b.msgs.filter((m) => m.topic === "e2e/q2/x").map((m) => [m.payload, m.qos]);
  }, N);
  assert.equal(msgs.length, N, "no duplicates");
  assert.deepEqual(msgs.map((m) => m[0]), Array.from({ length: N }, (_, i) => `n${i}`));
  assert.ok(msgs.every((m) => m[1] === 2));
});

test("v5: properties travel both ways", async () => {
  const r = await page.evaluate(async (url) => {
    await open_("v5", url, { protocolVersion: 5, keepalive: 10 });
    const c = cl("v5");
    await c.c.subscribe("e2e/v5/#", { qos: 1 });
    await c.c.publish("e2e/v5/a", "x", { qos: 1, properties: { contentType: "text/plain", userProperties: { plug: "7" } } });
    await until(() => c.msgs.length >= 1, 5000, "v5 message");
    c.c.end();
    return c.msgs[0];
  }, broker.wsUrl);
  assert.equal(r.payload, "x");
  assert.equal(r.props?.contentType, "text/plain");
  assert.deepEqual(r.props?.userProperties, { plug: "7" });
});

/** Whether `needle` (a string, as UTF-8) occurs in any of the frames. */
function framesContain(frames, needle) {
  const n = Buffer.from(needle);
  return frames.some((f) => f.includes(n));
}

/** The connect flags of each MQTT CONNECT among the frames (one packet per WebSocket frame). */
function connectFlags(frames) {
  return frames.filter((f) => f[0] === 0x10).map((f) => {
    let i = 1;
    while (f[i] & 0x80) i++; // remaining length (variable byte integer)
    i += 1;
    const nameLen = f.readUInt16BE(i);
    assert.equal(f.subarray(i + 2, i + 2 + nameLen).toString(), "MQTT");
    const flags = f[i + 2 + nameLen + 1]; // after the name and the protocol level
    return { username: (flags & 0x80) !== 0, password: (flags & 0x40) !== 0 };
  });
}

test("SCRAM-SHA-256: the right password connects, a wrong one is refused, none on the wire", async (t) => {
  if (BROKER === "mosquitto") return t.skip("Mosquitto has no SCRAM-SHA-256");
  // A second gateway whose SCRAM credential file `switchboard passwd-scram` made, the password
  // read from standard input (not a terminal).
  const PASSWORD = "horse-battery-staple-7";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-e2e-scram-"));
  const scramFile = path.join(dir, "scram.txt");
  const add = spawnSync(BIN, ["passwd-scram", scramFile, "add", "alice"], { input: `${PASSWORD}\n` });
  assert.equal(add.status, 0, `passwd-scram: ${add.stderr}`);
  assert.ok(!fs.readFileSync(scramFile, "utf8").includes(PASSWORD), "the file holds a verifier only");
  const sb = new Broker(www, { SWITCHBOARD_SCRAM__FILE: scramFile });
  let sbProxy, p2;
  try {
    await sb.start();
    // Through a proxy, to break the connection and watch the reconnection's exchange.
    sbProxy = new Proxy(sb.httpAddr);
    const url = `ws://${await sbProxy.listen()}/mqtt`;
    p2 = await browser.newPage();
    // Every WebSocket frame the page sends or receives, as the browser hands it to the socket
    // (before masking), by phase.
    const frames = { sent: [], received: [] };
    p2.on("websocket", (ws) => {
      ws.on("framesent", (f) => frames.sent.push(Buffer.from(f.payload)));
      ws.on("framereceived", (f) => frames.received.push(Buffer.from(f.payload)));
    });
    const phase = () => ({ sent: frames.sent.splice(0), received: frames.received.splice(0) });
    await p2.goto(`http://${sb.httpAddr}/client-e2e.html`);
    await p2.waitForFunction(() => window.ready === true);
    const scram = { protocolVersion: 5, username: "alice", authMethod: "SCRAM-SHA-256", keepalive: 10,
      reconnectPeriod: 100, maxReconnectPeriod: 200 };

    // The right password: connected, and publish/subscribe work.
    const ok = await p2.evaluate(async ([url, o]) => {
      const r = await outcome(open_("scram", url, o));
      if (!r.ok) return r;
      const c = cl("scram");
      await c.c.subscribe("e2e/scram/#", { qos: 1 });
      await c.c.publish("e2e/scram/a", "hello", { qos: 1 });
      await until(() => c.msgs.some((m) => m.topic === "e2e/scram/a"), 5000, "own message");
      return { ...r, msgs: c.msgs.map((m) => m.payload) };
    }, [url, { ...scram, password: PASSWORD }]);
    assert.equal(ok.ok, true, JSON.stringify(ok));
    assert.deepEqual(ok.msgs, ["hello"]);
    let seen = phase();
    assert.ok(framesContain(seen.sent, "SCRAM-SHA-256") && framesContain(seen.sent, "n,,n=alice,r="),
      "the client-first-message went out");
    assert.ok(framesContain(seen.sent, "c=biws,r="), "the client-final-message went out");
    assert.ok(framesContain(seen.received, "v="), "the server-final-message came back");
    assert.ok(!framesContain(seen.sent, PASSWORD), "the password is not on the wire");
    assert.deepEqual(connectFlags(seen.sent), [{ username: false, password: false }]);
    const nonce = (sent) => sent.map((f) => f.toString("latin1").match(/n,,n=alice,r=([A-Za-z0-9+/]{20})/)?.[1]).find(Boolean);
    const firstNonce = nonce(seen.sent);

    // A reconnection runs a fresh exchange, with a fresh nonce.
    sbProxy.cut();
    const back = await p2.evaluate(async () => {
      const c = cl("scram");
      await until(() => c.events.some((e) => e.e === "connect"), 8000, "reconnect");
      await c.c.publish("e2e/scram/b", "again", { qos: 1 });
      await until(() => c.msgs.some((m) => m.topic === "e2e/scram/b"), 5000, "message after reconnect");
      c.c.end();
      return c.events.filter((e) => e.e === "error").map((e) => e.arg);
    });
    assert.deepEqual(back, []);
    seen = phase();
    assert.deepEqual(connectFlags(seen.sent), [{ username: false, password: false }]);
    assert.ok(!framesContain(seen.sent, PASSWORD));
    const secondNonce = nonce(seen.sent);
    assert.ok(firstNonce && secondNonce && firstNonce !== secondNonce, `nonces ${firstNonce} ${secondNonce}`);

    // A second session of the same user, the wasm already loaded: the time of one exchange.
    const again = await p2.evaluate(([url, o]) => outcome(open_("scram2", url, o)).then((r) => {
      cl("scram2")?.c.end();
      return r;
    }), [url, { ...scram, password: PASSWORD }]);
    assert.equal(again.ok, true, JSON.stringify(again));
    t.diagnostic(`SCRAM-SHA-256 connect (PBKDF2 4096 rounds in wasm) took ${Math.round(again.ms)} ms`);

    // A broker that cannot prove itself (its server signature altered on the way): the
    // connection never counts as up.
    sbProxy.rewrite = (d) => {
      const i = d.indexOf("v=");
      if (i < 0) return d;
      const out = Buffer.from(d);
      out[i + 2] = out[i + 2] === 0x41 ? 0x42 : 0x41; // first base64 character: 'A' <-> other
      return out;
    };
    const forged = await p2.evaluate(([url, o]) => outcome(open_("scram-forged", url, o)),
      [url, { ...scram, password: PASSWORD }]);
    sbProxy.rewrite = null;
    assert.deepEqual([forged.ok, forged.code], [false, "refused"], JSON.stringify(forged));
    assert.match(forged.message, /did not prove/);
    phase();

    // A wrong password: refused, and the password still not on the wire.
    const bad = await p2.evaluate(([url, o]) => outcome(open_("scram-bad", url, o)),
      [url, { ...scram, password: "wrong-password" }]);
    assert.deepEqual([bad.ok, bad.code], [false, "refused"], JSON.stringify(bad));
    assert.match(bad.message, /bad user name or password/);
    seen = phase();
    assert.ok(!framesContain(seen.sent, "wrong-password"));

    // MQTT 3.1.1 has no enhanced authentication.
    const v4 = await p2.evaluate(([url, o]) => outcome(open_("scram-v4", url, o)),
      [url, { ...scram, protocolVersion: 4, password: PASSWORD }]);
    assert.deepEqual([v4.ok, v4.code], [false, "invalid_options"], JSON.stringify(v4));
    assert.match(v4.message, /MQTT 5/);

    // The check above can fail: a plain v5 login puts the password in CONNECT.
    phase();
    await p2.evaluate(([url, o]) => outcome(open_("plain", url, o)).then(() => cl("plain")?.c.end()),
      [url, { protocolVersion: 5, username: "alice", password: PASSWORD }]);
    seen = phase();
    assert.ok(framesContain(seen.sent, PASSWORD), "a plain login's password is visible to this check");
    assert.deepEqual(connectFlags(seen.sent), [{ username: true, password: true }]);
  } finally {
    await p2?.close();
    sbProxy?.close();
    await sb.stop();
    fs.rmSync(sb.dir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a backup URL takes over when the first is down", async () => {
  const dead = `ws://127.0.0.1:${await freePort()}/mqtt`;
  const r = await page.evaluate(async ([urls]) => {
    const info = await open_("backup", urls, { reconnectPeriod: 100 });
    const c = cl("backup");
    await c.c.publish("e2e/rt/backup", "hi", { qos: 1 });
    c.c.end();
    return info.connected;
  }, [[dead, broker.wsUrl]]);
  assert.equal(r, true);
});

test("keep alive: PINGREQ from the worker timer keeps an idle connection up", async () => {
  const r = await page.evaluate(async (url) => {
    await open_("ka", url, { keepalive: 1 });
    const c = cl("ka");
    // The broker closes a connection silent for 1.5 keep-alive intervals: stay idle for 3.5.
    await new Promise((res) => setTimeout(res, 3500));
    const result = { connected: c.c.connected, events: c.events.map((e) => e.e), clientId: c.c.clientId };
    c.c.end();
    return result;
  }, broker.wsUrl);
  assert.equal(r.connected, true);
  assert.deepEqual(r.events, []);
  if (BROKER === "mosquitto") assert.match(broker.proc.log, new RegExp(`PINGREQ from ${r.clientId}`));
});

/** The WebSocket URL through the proxy (made once). */
async function proxiedUrl() {
  if (!proxy) {
    proxy = new Proxy(broker.httpAddr);
    proxy.addr = await proxy.listen();
  }
  return `ws://${proxy.addr}${BROKER === "mosquitto" ? "/" : "/mqtt"}`;
}

test("connectTimeout: a broker that never answers fails the attempt", async () => {
  const url = await proxiedUrl();
  proxy.blackhole = true;
  try {
    const r = await page.evaluate((url) => outcome(open_("silent", url, { connectTimeout: 500 })), url);
    assert.deepEqual([r.ok, r.code], [false, "unreachable"]);
    assert.ok(r.ms >= 450 && r.ms < 3000, `failed after ${r.ms} ms`);
  } finally {
    proxy.blackhole = false;
    proxy.cut();
  }
});

test("clean session: an in-flight QoS 1 whose ack was lost expires offline, not replayed", async () => {
  const url = await proxiedUrl();
  await page.evaluate(async ([url, direct]) => {
    await open_("c", url, { keepalive: 10, reconnectPeriod: 100, maxReconnectPeriod: 200, offlineExpiry: 1000 });
    await open_("watch2", direct, {});
    await cl("watch2").c.subscribe("e2e/clean/#", { qos: 1 });
  }, [url, broker.wsUrl]);
  proxy.blackhole = true;
  await page.evaluate(async () => {
    window.lost = outcome(cl("c").c.publish("e2e/clean/lost", "lost", { qos: 1 }));
    await until(() => cl("watch2").msgs.some((m) => m.payload === "lost"), 5000, "broker got it");
  });
  proxy.down = true;
  proxy.cut();
  proxy.blackhole = false;
  const lost = await page.evaluate(() => window.lost);
  proxy.down = false;
  const r = await page.evaluate(async () => {
    const c = cl("c");
    await until(() => c.events.filter((e) => e.e === "connect").length >= 1, 8000, "reconnect");
    await c.c.publish("e2e/clean/after", "after", { qos: 1 });
    const w = cl("watch2");
    await until(() => w.msgs.some((m) => m.payload === "after"), 5000, "marker");
    const res = w.msgs.filter((m) => m.topic.startsWith("e2e/clean/")).map((m) => m.payload);
    c.c.end();
    w.c.end();
    return res;
  });
  assert.deepEqual([lost.ok, lost.code], [false, "expired"]);
  assert.ok(lost.ms >= 900, `expired after ${lost.ms} ms`);
  assert.deepEqual(r, ["lost", "after"], "the expired message was not sent again");
});

test("keep alive under a CSP forbidding workers: setTimeout fallback", async () => {
  const p2 = await browser.newPage();
  try {
    await p2.goto(page.url().replace("client-e2e.html", "client-csp.html"));
    await p2.waitForFunction(() => window.ready === true);
    assert.match(await p2.content(), /worker-src 'none'/);
    const r = await p2.evaluate(async (url) => {
      await open_("csp", url, { keepalive: 1 });
      const c = cl("csp");
      await new Promise((res) => setTimeout(res, 3500));
      const result = { connected: c.c.connected, events: c.events.map((e) => e.e), timerMode: c.c.timerMode };
      c.c.end();
      return result;
    }, broker.wsUrl);
    assert.deepEqual(r, { connected: true, events: [], timerMode: "fallback" });
  } finally {
    await p2.close();
  }
});

test("persistent session: resumed, in-flight QoS 1 retransmitted, offline messages delivered", async () => {
  const url = await proxiedUrl();
  const clientId = `e2e-persist-${Date.now().toString(36)}`;
  await page.evaluate(async ([url, clientId, direct]) => {
    await open_("p", url, { clientId, clean: false, keepalive: 10, reconnectPeriod: 100, maxReconnectPeriod: 200 });
    await cl("p").c.subscribe("e2e/persist/to-p", { qos: 1 });
    await open_("watch", direct, {});
    await cl("watch").c.subscribe("e2e/persist/from-p", { qos: 1 });
  }, [url, clientId, broker.wsUrl]);

  // The broker gets the PUBLISH, its PUBACK is lost, then the connection breaks.
  proxy.blackhole = true;
  await page.evaluate(async () => {
    window.inflight = outcome(cl("p").c.publish("e2e/persist/from-p", "inflight", { qos: 1 }));
    await until(() => cl("watch").msgs.some((m) => m.topic === "e2e/persist/from-p"), 5000, "broker got it");
  });
  proxy.down = true;
  proxy.cut();
  proxy.blackhole = false;
  await page.evaluate(async () => {
    const p = cl("p");
    await until(() => p.events.some((e) => e.e === "offline"), 5000, "offline");
    p.events.length = 0;
    // Published by someone else while p is away: the broker keeps it for p's session.
    await cl("watch").c.publish("e2e/persist/to-p", "queued", { qos: 1 });
  });
  proxy.down = false;
  const r = await page.evaluate(async () => {
    const p = cl("p");
    await until(() => p.events.some((e) => e.e === "connect"), 8000, "reconnect");
    const inflight = await window.inflight;
    await until(() => p.msgs.some((m) => m.payload === "queued"), 5000, "queued message");
    const res = { inflight, connack: p.events.find((e) => e.e === "connect").arg,
      queued: p.msgs.filter((m) => m.payload === "queued").length };
    p.c.end();
    cl("watch").c.end();
    return res;
  });
  assert.equal(r.inflight.ok, true, JSON.stringify(r.inflight));
  assert.deepEqual(r.connack, { sessionPresent: true });
  assert.equal(r.queued, 1);
  if (BROKER === "mosquitto") {
    // The retransmission carried DUP.
    assert.match(broker.proc.log, new RegExp(`Received PUBLISH from ${clientId} \\(d1, q1`));
  }
});

test("will: published by the broker when the connection breaks", async () => {
  const url = await proxiedUrl();
  await page.evaluate(async ([url, direct]) => {
    await open_("willwatch", direct, {});
    await cl("willwatch").c.subscribe("e2e/will/#", { qos: 1 });
    await open_("willer", url, { keepalive: 10, reconnectPeriod: 60000,
      will: { topic: "e2e/will/plug9", payload: "gone", qos: 1, retain: false } });
  }, [url, broker.wsUrl]);
  proxy.cut();
  const will = await page.evaluate(async () => {
    const w = cl("willwatch");
    await until(() => w.msgs.some((m) => m.topic === "e2e/will/plug9"), 8000, "will");
    cl("willer").c.end();
    w.c.end();
    return w.msgs.find((m) => m.topic === "e2e/will/plug9");
  });
  assert.equal(will.payload, "gone");
});

test("online and visibilitychange events reconnect at once, whatever the back-off", async () => {
  const url = await proxiedUrl();
  await page.evaluate(async (url) => {
    // Back-off ceiling of 10 minutes: without the events, no reconnect within the test.
    await open_("wake", url, { keepalive: 10, reconnectPeriod: 600000, maxReconnectPeriod: 600000 });
  }, url);
  for (const fire of ["window.dispatchEvent(new Event('online'))",
    "document.dispatchEvent(new Event('visibilitychange'))"]) {
    proxy.cut();
    const r = await page.evaluate(async (fire) => {
      const c = cl("wake");
      await until(() => c.events.some((e) => e.e === "offline"), 5000, "offline");
      await until(() => c.events.some((e) => e.e === "waiting"), 5000, "waiting");
      const waiting = c.events.find((e) => e.e === "waiting").arg;
      if (!(waiting.delay >= 0 && waiting.delay <= 600000 && waiting.urlIndex === 0)) throw new Error(JSON.stringify(waiting));
      c.events.length = 0;
      const t0 = performance.now();
      (0, eval)(fire);
      await until(() => c.events.some((e) => e.e === "connect"), 3000, "reconnect after " + fire);
      c.events.length = 0;
      return performance.now() - t0;
    }, fire);
    assert.ok(r < 3000, `${fire}: reconnected after ${r} ms`);
  }
  await page.evaluate(() => cl("wake").c.end());
});

test("the example page connects and switches a plug", async () => {
  const p2 = await browser.newPage();
  try {
    const base = BROKER === "mosquitto" ? `http://127.0.0.1:${pageServer.address().port}` : `http://${broker.httpAddr}`;
    await p2.goto(`${base}/example.html`);
    await p2.fill("#url", broker.wsUrl);
    await p2.click("#connect");
    await p2.waitForFunction(() => document.getElementById("log").textContent.includes("subscribed:"));
    assert.equal(await p2.textContent("#state"), "connected");
    await p2.click("[data-set=on]");
    await p2.waitForFunction(() => /publish plugs\/plug-1\/set on: resolved/.test(document.getElementById("log").textContent));
    await p2.waitForFunction(() => document.getElementById("log").textContent.includes("message plugs/plug-1/set = on"));
  } finally {
    await p2.close();
  }
});

test("offline: QoS 0 dropped, QoS 1 expires, never replayed; reconnect resubscribes", async () => {
  await page.evaluate(() => cl("b").c.subscribe("e2e/late/#", { qos: 1 }));
  await broker.stop();
  const offline = await page.evaluate(async () => {
    const a = cl("a");
    await until(() => a.events.some((e) => e.e === "offline") && cl("b").events.some((e) => e.e === "offline"), 8000, "offline");
    const q0 = await outcome(a.c.publish("e2e/late/q0", "x", { qos: 0 }));
    const stale = await outcome(a.c.publish("e2e/late/stale", "stale", { qos: 1 }));
    // Published offline, sent once the broker is back (within its expiry).
    window.fresh = outcome(a.c.publish("e2e/late/fresh", "fresh", { qos: 1 }));
    a.events.length = 0;
    cl("b").events.length = 0;
    return { q0, stale };
  });
  assert.deepEqual([offline.q0.ok, offline.q0.code], [false, "dropped"]);
  assert.deepEqual([offline.stale.ok, offline.stale.code], [false, "expired"]);
  assert.ok(offline.stale.ms >= 1400, `expired after ${offline.stale.ms} ms`);

  await broker.start(); // same ports
  const r = await page.evaluate(async () => {
    const a = cl("a"), b = cl("b");
    await until(() => a.events.some((e) => e.e === "connect") && b.events.some((e) => e.e === "connect"), 10000, "reconnect");
    const fresh = await window.fresh;
    // Resubscribed (the broker had no session): a message published now reaches b. b's
    // SUBSCRIBE races a's PUBLISH inside the broker, so publish until one arrives.
    for (let i = 0; i < 25 && !b.msgs.some((m) => m.topic === "e2e/late/marker"); i++) {
      await a.c.publish("e2e/late/marker", "marker", { qos: 1 });
      await until(() => b.msgs.some((m) => m.topic === "e2e/late/marker"), 200).catch(() => {});
    }
    await until(() => b.msgs.some((m) => m.topic === "e2e/late/marker"), 100, "marker after resubscribe");
    return {
      fresh,
      aEvents: a.events.map((e) => e.e),
      connack: a.events.find((e) => e.e === "connect").arg,
      late: b.msgs.filter((m) => m.topic.startsWith("e2e/late/")).map((m) => m.payload),
    };
  });
  assert.equal(r.fresh.ok, true, JSON.stringify(r.fresh));
  assert.ok(r.aEvents.includes("reconnect"));
  assert.deepEqual(r.connack, { sessionPresent: false });
  // The stale publication never reached the broker; q0 was dropped; fresh and marker did.
  assert.ok(!r.late.includes("stale") && !r.late.includes("x"), JSON.stringify(r.late));
  assert.ok(r.late.includes("marker"));
});

test("end() closes and rejects later calls", async () => {
  const r = await page.evaluate(async () => {
    const a = cl("a");
    a.c.end();
    await until(() => a.events.some((e) => e.e === "end"), 3000, "end");
    const after = await outcome(a.c.publish("e2e/x", "y", { qos: 1 }));
    return { connected: a.c.connected, after };
  });
  assert.equal(r.connected, false);
  assert.deepEqual([r.after.ok, r.after.code], [false, "closed"]);
});
