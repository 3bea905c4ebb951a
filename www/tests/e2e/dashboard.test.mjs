// End-to-end: the built dashboard in headless Chromium at a phone viewport, against
// `switchboard demo` (gateway + simulated plugs of every family), with a real MQTT client
// (MQTT.js over the gateway's TCP port) watching the wire.
//
//   node --test www/tests/e2e/            (from the workspace root)
//
// Environment: SWITCHBOARD_BIN (default target/debug/switchboard), SWITCHBOARD_DIST (default
// dist/). Screenshots go to test-artifacts/. Prints the transfer size (gzip -9 of wasm + JS +
// CSS), the time from navigation to the first plug states, and tap-to-confirmed times.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  ARTIFACTS, BIN, DIST, STEP_MS, commandOf, launchChromium, startGateway, stopGateway, waitMessage, watcher,
} from "./support.mjs";

/** The last relay-0 state `seen` reports for device `id` (undefined when none), per family. */
function stateOf(id, seen) {
  const family = id.slice(0, id.indexOf(":"));
  const key = id.slice(id.indexOf(":") + 1);
  const word = (v) => (typeof v === "boolean" ? v : /^(on|true|1)$/i.test(String(v)) ? true : /^(off|false|0)$/i.test(String(v)) ? false : undefined);
  const json = (p) => { try { return JSON.parse(p); } catch { return undefined; } };
  let state;
  for (const m of seen) {
    let v;
    if (family === "tasmota") {
      if (m.topic === `stat/${key}/POWER` || m.topic === `stat/${key}/POWER1`) v = word(m.payload);
      else if (m.topic === `stat/${key}/RESULT` || m.topic === `tele/${key}/STATE`) {
        const j = json(m.payload);
        v = word(j?.POWER ?? j?.POWER1);
      }
    } else if (family === "shelly-gen1" && m.topic === `shellies/${key}/relay/0`) v = word(m.payload);
    else if (family === "shelly-gen2" && m.topic === `${key}/status/switch:0`) v = json(m.payload)?.output;
    else if (family === "z2m" && m.topic === `zigbee2mqtt/${key}`) v = word(json(m.payload)?.state);
    if (v !== undefined) state = v;
  }
  return state;
}

function transferSize(dist) {
  let total = 0;
  const parts = [];
  for (const f of readdirSync(dist)) {
    // The service worker and the embeddable widget are not part of the page's download.
    if (!/\.(wasm|js|css)$/.test(f) || f === "sw.js" || f === "embed.js") continue;
    const gz = gzipSync(readFileSync(join(dist, f)), { level: 9 }).length;
    parts.push(`${f}: ${(gz / 1024).toFixed(1)} KiB`);
    total += gz;
  }
  // Inline scripts of index.html are part of the transfer too.
  total += gzipSync(readFileSync(join(dist, "index.html")), { level: 9 }).length;
  return { total, parts };
}

// A figure to print, not a timed or sized assertion: the budget (200 KB) is tracked in the
// issue notes and BENCHMARKS.md, and a build over it must not turn CI red.
test("transfer size: wasm + JS + CSS, gzip -9 (budget 200 KB)", () => {
  assert.ok(existsSync(join(DIST, "index.html")), `built dashboard in ${DIST} (set SWITCHBOARD_DIST)`);
  const size = transferSize(DIST);
  console.log(`transfer size (gzip -9, wasm + JS + CSS + index.html): ${(size.total / 1024).toFixed(1)} KiB [${size.parts.join(", ")}]`);
  assert.ok(size.total > 0, "the built files are measurable");
  console.log(`transfer size vs budget: ${size.total} B of 200000 B (${size.total <= 200000 ? "within" : "OVER"} budget)`);
});

test("dashboard against the demo household", { timeout: 180_000 }, async (t) => {
  assert.ok(existsSync(BIN), `gateway binary ${BIN} (set SWITCHBOARD_BIN)`);
  assert.ok(existsSync(join(DIST, "index.html")), `built dashboard in ${DIST} (set SWITCHBOARD_DIST)`);
  mkdirSync(ARTIFACTS, { recursive: true });

  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-e2e-"));
  let gw = await startGateway(dataDir);
  const watch = await watcher(gw.mqtt);
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close().catch(() => {});
    watch.client.end(true);
    await stopGateway(gw);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true, isMobile: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  try {
    await scenario(t, page, errors, () => gw, (g) => (gw = g), dataDir, watch);
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, "e2e-failure.png"), fullPage: true }).catch(() => {});
    const html = await page.content().catch(() => "");
    console.log(`page at failure:\n${html.slice(html.indexOf("<body"), html.indexOf("<body") + 4000)}`);
    console.log(`page errors: ${JSON.stringify(errors)}`);
    console.log(`gateway log tail:\n${gw.log().split("\n").slice(-30).join("\n")}`);
    throw e;
  }
});

async function scenario(t, page, errors, getGw, setGw, dataDir, watch) {
  let gw = getGw();
  // 1. Plugs appear with their retained state.
  const t0 = Date.now();
  await page.goto(`http://${gw.http}/`);
  await page.waitForSelector("[role=switch][data-state=on], [role=switch][data-state=off]", { timeout: STEP_MS });
  const firstPaint = Date.now() - t0;
  await page.waitForSelector("[data-conn=live]", { timeout: STEP_MS });
  // Let the rest of the household's retained state arrive.
  await page.waitForFunction(() => document.querySelectorAll("li.card").length >= 5, null, { timeout: STEP_MS });
  const cards = await page.$$eval("li.card", (els) => els.map((e) => e.dataset.device));
  console.log(`navigation to first plug states rendered: ${firstPaint} ms (${cards.length} cards; gateway just started)`);
  const t1 = Date.now();
  await page.reload();
  await page.waitForSelector("[role=switch][data-state=on], [role=switch][data-state=off]", { timeout: STEP_MS });
  console.log(`reload to first plug states rendered: ${Date.now() - t1} ms`);
  await page.screenshot({ path: join(ARTIFACTS, "e2e-01-grid.png"), fullPage: true });

  // 2. Tap: the family's command goes out (never retained), the card is pending, then confirmed.
  const candidates = await page.$$eval("li.card:not(.offline)", (els) =>
    els
      .filter((e) => e.querySelectorAll("[role=switch]").length === 1)
      .filter((e) => /^(tasmota|shelly-gen1|shelly-gen2|z2m):/.test(e.dataset.device))
      .map((e) => ({ id: e.dataset.device, state: e.querySelector("[role=switch]").dataset.state })),
  );
  assert.ok(candidates.length >= 2, `switchable plugs: ${JSON.stringify(candidates)}`);
  const tapTimes = [];
  for (const target of candidates.slice(0, 3)) {
    const want = target.state !== "on";
    const sel = `li.card[data-device="${target.id}"] [role=switch]`;
    const cmd = commandOf(target.id, want);
    const from = watch.seen.length;
    const tapAt = Date.now();
    await page.tap(sel);
    const sent = await waitMessage(watch, (m) => cmd.topic(m.topic), from);
    assert.ok(cmd.payload(sent.payload), `${target.id}: ${sent.topic} ${sent.payload}`);
    assert.equal(sent.retain, false, "commands are never retained");
    await page.waitForSelector(`${sel}[data-state=${want ? "on" : "off"}]:not([aria-busy])`, { timeout: STEP_MS });
    tapTimes.push(Date.now() - tapAt);
    assert.equal(await page.getAttribute(sel, "aria-checked"), String(want));
    console.log(`tap-to-confirmed ${target.id}: ${tapTimes.at(-1)} ms (command on ${sent.topic} after ${sent.at - tapAt} ms)`);
  }
  await page.screenshot({ path: join(ARTIFACTS, "e2e-02-confirmed.png"), fullPage: true });

  // 3. A device whose last will says offline greys out and cannot be toggled.
  const tasmota = cards.find((id) => id.startsWith("tasmota:"));
  assert.ok(tasmota, "a Tasmota plug in the household");
  const key = tasmota.slice("tasmota:".length);
  await watch.client.publishAsync(`tele/${key}/LWT`, "Offline", { retain: true, qos: 1 });
  const offSel = `li.card.offline[data-device="${tasmota}"]`;
  await page.waitForSelector(offSel, { timeout: STEP_MS });
  assert.equal(await page.isDisabled(`${offSel} [role=switch]`), true);
  await page.screenshot({ path: join(ARTIFACTS, "e2e-03-offline.png"), fullPage: true });
  await watch.client.publishAsync(`tele/${key}/LWT`, "Online", { retain: true, qos: 1 });
  await page.waitForSelector(`li.card:not(.offline)[data-device="${tasmota}"]`, { timeout: STEP_MS });

  // 4. The gateway restarts: the banner shows reconnecting, then live, with the right states.
  const addrs = { mqtt: gw.mqtt, http: gw.http };
  watch.client.end(true);
  await stopGateway(gw);
  await page.waitForSelector("[data-conn=reconnecting]", { timeout: STEP_MS });
  const bannerText = await page.textContent("[data-conn=reconnecting]");
  assert.match(bannerText, /Reconnecting/);
  console.log(`banner while down: ${bannerText.trim()}`);
  await page.screenshot({ path: join(ARTIFACTS, "e2e-04-reconnecting.png") });
  setGw(await startGateway(dataDir, { mqttAddr: addrs.mqtt, httpAddr: addrs.http }));
  gw = getGw();
  // Everything the broker says from now on (retained first), to know the true states.
  const check = await watcher(gw.mqtt);
  t.after(() => check.client.end(true));
  const downAt = Date.now();
  await page.waitForSelector("[data-conn=live]", { timeout: 45_000 });
  console.log(`live again ${Date.now() - downAt} ms after the gateway was back`);
  // Wait (bounded) until the restarted devices have reported the state of at least three
  // cards: under load the simulated household can come back after the page does.
  const known = () => cards.filter((id) => stateOf(id, check.seen) !== undefined).length;
  const deadline = Date.now() + 30_000;
  while (known() < 3 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const truths = [];
  for (const id of cards) {
    const on = stateOf(id, check.seen);
    if (on === undefined) continue;
    truths.push(id);
    const sel = `li.card[data-device="${id}"] [role=switch]`;
    await page.waitForSelector(`${sel}[data-state=${on ? "on" : "off"}]`, { timeout: STEP_MS });
  }
  console.log(`after the restart, ${truths.length} cards match the devices' reported state`);
  assert.ok(truths.length >= 3, `known states after the restart: ${truths.join(", ")}`);
  await page.screenshot({ path: join(ARTIFACTS, "e2e-05-after-restart.png"), fullPage: true });

  // 5. Detail view, topic view, dark theme and a 320 px wide screen, for the record.
  await page.click(`li.card[data-device="${candidates[0].id}"] a.card-name`);
  await page.waitForSelector("section.detail", { timeout: STEP_MS });
  await page.screenshot({ path: join(ARTIFACTS, "e2e-06-detail.png"), fullPage: true });
  await page.goto(`http://${gw.http}/#/topics`);
  await page.waitForSelector("ul.tree", { timeout: STEP_MS });
  await page.screenshot({ path: join(ARTIFACTS, "e2e-07-topics.png") });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`http://${gw.http}/#/`);
  await page.waitForSelector("[role=switch][data-state=on], [role=switch][data-state=off]", { timeout: STEP_MS });
  await page.screenshot({ path: join(ARTIFACTS, "e2e-08-dark.png"), fullPage: true });
  await page.setViewportSize({ width: 320, height: 640 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at 320 px (overflow ${overflow}px)`);
  await page.screenshot({ path: join(ARTIFACTS, "e2e-09-320px.png"), fullPage: true });

  // 6. Installed as a PWA: with the gateway gone, a reload still shows the app shell.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.equal(await page.evaluate(() => navigator.serviceWorker.ready.then((r) => Boolean(r.active))), true);
  await page.reload();
  await page.waitForSelector("[data-conn=live]", { timeout: STEP_MS });
  assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), "page controlled by the service worker");
  await stopGateway(gw);
  await page.reload();
  await page.waitForSelector("header.bar h1", { timeout: STEP_MS });
  await page.waitForSelector("[data-conn=reconnecting], [data-conn=connecting]", { timeout: STEP_MS });
  await page.screenshot({ path: join(ARTIFACTS, "e2e-10-offline-shell.png") });

  const ignorable = (e) => /WebSocket|ERR_CONNECTION_REFUSED|net::/.test(e);
  assert.deepEqual(errors.filter((e) => !ignorable(e)), [], "no page errors");
  console.log(`tap-to-confirmed: ${tapTimes.join(", ")} ms`);
}

test("desktop layout at 1366 px: whole names, status line in the content column", { timeout: 120_000 }, async (t) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-e2e-desk-"));
  const gw = await startGateway(dataDir);
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close().catch(() => {});
    await stopGateway(gw);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const page = await (await browser.newContext({ viewport: { width: 1366, height: 768 } })).newPage();
  await page.goto(`http://${gw.http}/`);
  await page.waitForSelector("[data-conn=live]", { timeout: STEP_MS });
  await page.waitForFunction(() => document.querySelectorAll("li.card").length >= 12, null, { timeout: STEP_MS });
  await page.screenshot({ path: join(ARTIFACTS, "e2e-desktop-1366.png"), fullPage: true });
  const layout = await page.evaluate(() => {
    const names = [...document.querySelectorAll("li.card .card-name .name")];
    const cut = names.filter((n) => n.scrollWidth > n.clientWidth + 1).map((n) => n.textContent);
    const card = document.querySelector("li.card").getBoundingClientRect();
    const dot = document.querySelector(".banner .dot").getBoundingClientRect();
    const row = document.querySelector("ul.cards").getBoundingClientRect();
    return { cut, longest: Math.max(...names.map((n) => n.textContent.length)), cardWidth: card.width, perRow: Math.round(row.width / card.width), bannerLeft: dot.left, columnLeft: card.left };
  });
  console.log(`# 1366 px: cards ${Math.round(layout.cardWidth)} px wide, about ${layout.perRow} a row; longest name ${layout.longest} characters; status dot at x=${Math.round(layout.bannerLeft)}, content column at x=${Math.round(layout.columnLeft)}`);
  assert.deepEqual(layout.cut, [], "plug names cut short");
  assert.ok(Math.abs(layout.bannerLeft - layout.columnLeft) <= 4, `status line at x=${layout.bannerLeft}, column at x=${layout.columnLeft}`);
});
