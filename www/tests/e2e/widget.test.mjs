// End-to-end: the embeddable <switchboard-switch> widget on a page served from another origin
// (a second HTTP server on another port), against `switchboard demo`, in headless Chromium, with
// scoped tokens made by `switchboard token create --device`. An MQTT.js watcher on the gateway's
// TCP port checks what reaches the devices.
//
//   node --test www/tests/e2e/widget.test.mjs      (from the workspace root, after a dist build)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  ARTIFACTS, BIN, DIST, STEP_MS, commandOf, launchChromium, mqtt, startGateway, stopGateway,
  switchboard, until, waitMessage, watcher,
} from "./support.mjs";

const WIDGET_FILES = ["embed.js", "widget/index.js", "widget/switchboard_client.js", "widget/switchboard_client_bg.wasm"];

// A figure to print (the aim, 90 KB, is tracked in the issue notes), not a sized assertion.
test("widget transfer size, gzip -9 (aim 90 KB)", () => {
  let total = 0;
  const parts = [];
  for (const f of WIDGET_FILES) {
    const path = join(DIST, f);
    assert.ok(existsSync(path), `${path} (build with cargo xtask dist)`);
    const gz = gzipSync(readFileSync(path), { level: 9 }).length;
    parts.push(`${f}: ${gz} B`);
    total += gz;
  }
  console.log(`widget transfer size (gzip -9): ${total} B = ${(total / 1000).toFixed(1)} KB [${parts.join(", ")}] (aim 90 KB: ${total <= 90_000 ? "met" : "MISSED"})`);
});

/** A host page server on its own port (another origin than the gateway). */
async function hostServer() {
  const pages = new Map();
  const server = createServer((req, res) => {
    const body = pages.get(new URL(req.url, "http://x").pathname);
    res.writeHead(body ? 200 : 404, { "content-type": "text/html; charset=utf-8" });
    res.end(body ?? "not found");
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, pages, origin: `http://127.0.0.1:${server.address().port}` };
}

/** Retained device-channel views by device id, from a watcher of `switchboard/devices/+`. */
function views(w) {
  const out = new Map();
  for (const m of w.seen) {
    if (!m.topic.startsWith("switchboard/devices/") || m.topic.endsWith("/set")) continue;
    if (m.payload) {
      const v = JSON.parse(m.payload);
      out.set(v.id, v);
    }
  }
  return out;
}

async function wsConnections(gw) {
  const text = await (await fetch(`http://${gw.http}/metrics`)).text();
  const m = text.match(/^switchboard_connections\{transport="ws"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

test("embedded widgets on another origin: shared connection, lazy load, toggle, token scope, iframe", { timeout: 240_000 }, async (t) => {
  assert.ok(existsSync(BIN), `gateway binary ${BIN} (set SWITCHBOARD_BIN)`);
  assert.ok(existsSync(join(DIST, "embed.js")), `built widget in ${DIST} (set SWITCHBOARD_DIST)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-widget-"));
  const host = await hostServer();
  const gw = await startGateway(dataDir);
  const watch = await watcher(gw.mqtt);
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close().catch(() => {});
    watch.client.end(true);
    host.server.close();
    await stopGateway(gw);
    rmSync(dataDir, { recursive: true, force: true });
  });

  // Two online Tasmota plugs of the demo household with a known state, from the device channel.
  const [a, b] = await until("two plugs on the device channel", () => {
    const online = [...views(watch).values()].filter(
      (v) => v.id.startsWith("tasmota:") && v.online === "Online" && v.relays[0]?.state !== "Unknown",
    );
    return online.length >= 2 && online.slice(0, 2);
  });

  // Tokens: one for both plugs, bound to the host page's origin; one for plug A only.
  const tokenAB = switchboard(["token", "--data-dir", dataDir, "create", "--name", "host-ab", "--device", a.id, "--device", b.id, "--origin", host.origin]).trim();
  const tokenA = switchboard(["token", "--data-dir", dataDir, "create", "--name", "host-a", "--device", a.id]).trim();

  const gateway = `ws://${gw.http}/mqtt`;
  const widget = (id, device, token) =>
    `<switchboard-switch id="${id}" gateway="${gateway}" device="${device}" token="${token}" style="--sb-accent:#c2410c"></switchboard-switch>`;
  host.pages.set(
    "/",
    `<!doctype html><html><head><meta charset="utf-8"><title>my home page</title>
     <script type="module" src="http://${gw.http}/embed.js"></script></head><body>
     <h1>My home page</h1><div style="height:3000px">scroll down</div>
     ${widget("wa", a.id, tokenAB)} ${widget("wb", b.id, tokenAB)}
     ${widget("forbidden", b.id, tokenA)}</body></html>`,
  );

  const page = await browser.newPage({ viewport: { width: 390, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const wasmLoads = [];
  page.on("request", (r) => r.url().endsWith(".wasm") && wasmLoads.push(r.url()));
  const state = (id) => page.locator(`#${id}`).getAttribute("data-state");
  const status = (id) => page.locator(`#${id}`).locator(".status").textContent();

  try {
    // 1. Below the fold: defined, but no wasm fetched and no connection yet.
    await page.goto(`${host.origin}/`);
    await page.waitForFunction(() => customElements.get("switchboard-switch") !== undefined);
    await page.waitForTimeout(300);
    assert.deepEqual(wasmLoads, [], "the wasm waits until a widget is visible");
    assert.equal(await page.evaluate(() => customElements.get("switchboard-switch").connectionCount), 0);

    // 2. Scrolled into view: the wasm loads once, the widgets show their plugs.
    await page.locator("#wa").scrollIntoViewIfNeeded();
    for (const [id, v] of [["wa", a], ["wb", b]]) {
      await until(`${id} shows its state`, async () => ["on", "off"].includes(await state(id)));
      assert.equal(await page.locator(`#${id}`).locator(".name").textContent(), v.name);
    }
    assert.equal(wasmLoads.length, 1, `one wasm fetch: ${wasmLoads}`);

    // 3. Three widgets, two tokens: two connections (A and B share theirs).
    assert.equal(await page.evaluate(() => customElements.get("switchboard-switch").connectionCount), 2);
    assert.equal(await wsConnections(gw), 2, "the gateway sees two WebSocket connections");

    // 4. The token for plug A cannot see (or switch) plug B.
    await until("the forbidden widget says so", async () => (await state("forbidden")) === "error");
    assert.match(await status("forbidden"), /Not allowed/);
    assert.ok(await page.locator("#forbidden").locator("button").isDisabled());

    // 5. Tap plug A: pending, then confirmed by the device, and the device got its own command.
    const before = await state("wa");
    const want = before !== "on";
    const mark = watch.seen.length;
    const t0 = Date.now();
    await page.locator("#wa").locator("button").click();
    const cmd = commandOf(a.id, want);
    await waitMessage(watch, (m) => cmd.topic(m.topic) && cmd.payload(m.payload), mark);
    await until("plug A confirmed", async () => (await state("wa")) === (want ? "on" : "off"));
    console.log(`widget tap -> confirmed: ${Date.now() - t0} ms`);
    assert.equal(await page.locator("#wa").locator("button").getAttribute("aria-checked"), String(want));
    await page.screenshot({ path: join(ARTIFACTS, "widget-host-page.png") });

    // 6. Over the wire: token A publishing to plug B's command topic gets v5 PUBACK 0x87 and
    // plug B does not move; token A+B is refused from an origin it is not bound to.
    const bBefore = views(watch).get(b.id).relays[0].state;
    const direct = mqtt.connect(`ws://${gw.http}/mqtt`, { protocolVersion: 5, username: "token", password: tokenA, reconnectPeriod: 0 });
    await new Promise((ok, fail) => { direct.once("connect", ok); direct.once("error", fail); });
    const refused = await direct
      .publishAsync(`switchboard/devices/${b.id}/set`, JSON.stringify({ relay: 0, on: bBefore !== "On" }), { qos: 1 })
      .then(() => null, (e) => e);
    direct.end(true);
    assert.ok(refused && /not authorized|0x87|135/i.test(`${refused.message} ${refused.code}`), `PUBACK refused: ${refused}`);
    await page.waitForTimeout(500);
    assert.equal(views(watch).get(b.id).relays[0].state, bBefore, "plug B did not move");
    const wrongOrigin = mqtt.connect(`ws://${gw.http}/mqtt`, { protocolVersion: 5, username: "token", password: tokenAB, reconnectPeriod: 0 });
    const outcome = await new Promise((ok) => {
      wrongOrigin.once("connect", () => ok("connected"));
      wrongOrigin.once("error", (e) => ok(e.message));
      wrongOrigin.once("close", () => ok("closed"));
    });
    wrongOrigin.end(true);
    assert.notEqual(outcome, "connected", "a token bound to the host page's origin is refused without it");

    // 7. Attribute change: widget B now shows plug A (same connection).
    await page.locator("#wb").evaluate((el, id) => el.setAttribute("device", id), a.id);
    await until("wb follows its new device", async () => (await page.locator("#wb").locator(".name").textContent()) === a.name);

    // 8. Removing the widgets frees their connection.
    await page.evaluate(() => { document.getElementById("wa").remove(); document.getElementById("wb").remove(); });
    await until("the shared connection closes", async () => (await page.evaluate(() => customElements.get("switchboard-switch").connectionCount)) === 1);
    await until("the gateway sees one WebSocket left", async () => (await wsConnections(gw)) === 1);

    // 9. The iframe alternative, for hosts that cannot run scripts.
    host.pages.set(
      "/frame",
      `<!doctype html><html><body><iframe id="f" src="http://${gw.http}/embed/${encodeURIComponent(a.id)}?token=${tokenA}" style="border:0;width:320px;height:112px"></iframe></body></html>`,
    );
    await page.goto(`${host.origin}/frame`);
    const frame = page.frameLocator("#f");
    await until("the iframe widget shows plug A", async () =>
      ["on", "off"].includes(await frame.locator("switchboard-switch").getAttribute("data-state")));
    const framed = await frame.locator("switchboard-switch").getAttribute("data-state");
    await frame.locator("switchboard-switch").locator("button").click();
    await until("the iframe widget confirmed the toggle", async () =>
      (await frame.locator("switchboard-switch").getAttribute("data-state")) === (framed === "on" ? "off" : "on"));
    assert.deepEqual(errors, [], "no page errors");
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, "widget-failure.png"), fullPage: true }).catch(() => {});
    console.log(`page errors: ${JSON.stringify(errors)}`);
    console.log(`gateway log tail:\n${gw.log().split("\n").slice(-30).join("\n")}`);
    throw e;
  }
});
