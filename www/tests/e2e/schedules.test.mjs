// End-to-end: schedules edited from the device view of the built dashboard (headless Chromium at
// a phone viewport) against `switchboard demo`. A real MQTT client (MQTT.js, MQTT 5 with
// retain-as-published, QoS 1) checks what reaches the broker, and the gateway's own API
// (`/api/v1/schedules`, loopback) checks that the gateway accepted and runs it.
//
//   node --test www/tests/e2e/schedules.test.mjs      (from the workspace root)
//
// Environment: SWITCHBOARD_BIN, SWITCHBOARD_DIST, as for dashboard.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ARTIFACTS, BIN, DIST, STEP_MS, launchChromium, mqtt, startGateway, stopGateway, until, waitMessage, watcher,
} from "./support.mjs";

const PREFIX = "switchboard/schedules/";

/**
 * An MQTT 5 client subscribed to `filter` at QoS 1 with retain-as-published, recording what it
 * sees: live deliveries carry the publisher's retain flag, and a delivery at QoS 1 means the
 * message was published at QoS 1.
 */
async function v5Watcher(addr, filter) {
  const client = mqtt.connect(`mqtt://${addr}`, {
    protocolVersion: 5,
    reconnectPeriod: 500,
    clientId: `e2e-sched-${process.pid}-${Math.random()}`,
  });
  const seen = [];
  client.on("message", (topic, payload, packet) => {
    seen.push({ topic, payload: payload.toString(), retain: packet.retain, qos: packet.qos });
  });
  await new Promise((ok, fail) => {
    client.once("connect", ok);
    client.once("error", fail);
  });
  await client.subscribeAsync(filter, { qos: 1, rap: true });
  return { client, seen };
}

/** `GET /api/v1/schedules/<id>` of the gateway: `{ status, body }`. */
async function apiSchedule(gw, id) {
  const res = await fetch(`http://${gw.http}/api/v1/schedules/${encodeURIComponent(id)}`);
  return { status: res.status, body: res.status === 200 ? await res.json() : undefined };
}

/** The id prefix the dashboard derives from a device id (see `schedule::new_id`). */
function shortDevice(id) {
  return id.slice(id.indexOf(":") + 1).replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "");
}

test("schedules: add, pause and delete from a device's view", { timeout: 150_000 }, async (t) => {
  assert.ok(existsSync(BIN), `gateway binary ${BIN} (set SWITCHBOARD_BIN)`);
  assert.ok(existsSync(join(DIST, "index.html")), `built dashboard in ${DIST} (set SWITCHBOARD_DIST)`);
  mkdirSync(ARTIFACTS, { recursive: true });

  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-e2e-sched-"));
  const gw = await startGateway(dataDir);
  const watch = await v5Watcher(gw.mqtt, `${PREFIX}+`);
  const browser = await launchChromium();
  const extra = [];
  t.after(async () => {
    await browser.close().catch(() => {});
    watch.client.end(true);
    for (const c of extra) c.end(true);
    await stopGateway(gw);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, hasTouch: true, isMobile: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));

  try {
    await scenario(page, gw, watch, extra);
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, "e2e-schedules-failure.png"), fullPage: true }).catch(() => {});
    const html = await page.content().catch(() => "");
    console.log(`page at failure:\n${html.slice(html.indexOf("<main"), html.indexOf("<main") + 6000)}`);
    console.log(`page errors: ${JSON.stringify(errors)}`);
    console.log(`gateway log tail:\n${gw.log().split("\n").slice(-30).join("\n")}`);
    throw e;
  }
  const ignorable = (e) => /WebSocket|ERR_CONNECTION_REFUSED|net::/.test(e);
  assert.deepEqual(errors.filter((e) => !ignorable(e)), [], "no page errors");
});

async function scenario(page, gw, watch, extra) {
  // 1. Open a single-relay plug's detail view.
  await page.goto(`http://${gw.http}/`);
  await page.waitForSelector("[data-conn=live]", { timeout: STEP_MS });
  await page.waitForFunction(() => document.querySelectorAll("li.card").length >= 5, null, { timeout: STEP_MS });
  const device = await page.$$eval("li.card", (els) =>
    els.filter((e) => e.querySelectorAll("[role=switch]").length === 1).map((e) => e.dataset.device)[0],
  );
  assert.ok(device, "a plug with one relay");
  await page.tap(`li.card[data-device="${device}"] a.card-name`);
  const section = "section.schedules";
  const form = `${section} form.schedule-form`;
  await page.waitForSelector(form, { timeout: STEP_MS });
  // The gateway's zone by name (from its retained $SYS/broker/time_zone), on the hint and the field.
  await page.waitForFunction((sel) => /Times are in \S+, the gateway's time zone/.test(document.querySelector(sel)?.textContent ?? ""), `${section} .hint`, { timeout: STEP_MS });
  const zone = (await page.textContent(`${section} .hint`)).match(/Times are in (\S+),/)[1];
  assert.match(await page.textContent(form), new RegExp(`Time \\(${zone.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\)`));
  assert.match(await page.textContent(section), /No schedules yet/);

  // 2. Add "off at 06:45, Monday to Friday".
  await page.fill(`${form} input[name=time]`, "06:45");
  for (const day of ["Mon", "Tue", "Wed", "Thu", "Fri"]) {
    await page.tap(`${form} .chip[data-day=${day}]`);
    assert.equal(await page.getAttribute(`${form} .chip[data-day=${day}]`, "aria-pressed"), "true");
  }
  await page.tap(`${form} label.seg:has(input[name=schedule-on][value=off]) span`);
  assert.equal(await page.isChecked(`${form} input[name=schedule-on][value=off]`), true);
  assert.equal((await page.textContent(`${form} .preview`)).trim(), "Off at 06:45 Mon–Fri");
  let from = watch.seen.length;
  await page.tap(`${form} button[type=submit]`);
  const added = await waitMessage(watch, (m) => m.payload !== "", from);
  const id = added.topic.slice(PREFIX.length);
  assert.match(id, new RegExp(`^${shortDevice(device)}-[0-9a-z]{6}$`), `generated id ${id}`);
  assert.equal(added.retain, true, "published retained");
  assert.equal(added.qos, 1, "published at QoS 1");
  const atRule = { kind: "at", time: "06:45", days: ["mon", "tue", "wed", "thu", "fri"], on: false };
  assert.deepEqual(JSON.parse(added.payload), { id, device, relay: 0, enabled: true, rule: atRule });
  console.log(`added ${added.topic}: ${added.payload}`);

  // Stored on the broker: a new subscriber gets it as a retained message.
  const fresh = await watcher(gw.mqtt, added.topic);
  extra.push(fresh.client);
  const stored = await waitMessage(fresh, (m) => m.topic === added.topic);
  assert.equal(stored.retain, true);
  assert.deepEqual(JSON.parse(stored.payload), JSON.parse(added.payload));
  // Accepted by the gateway's scheduler (it ignores payloads that fail its checks).
  const api = await until(`the gateway to run schedule ${id}`, async () => {
    const r = await apiSchedule(gw, id);
    return r.status === 200 && r.body;
  });
  assert.equal(api.device, device);
  assert.deepEqual(api.rule, atRule);
  assert.equal(typeof api.next_fire_ms, "number", "an enabled `at` rule has a next firing");

  // Listed once the broker echoes it.
  const row = `li.schedule[data-schedule="${id}"]`;
  await page.waitForSelector(row, { timeout: STEP_MS });
  assert.equal((await page.textContent(`${row} .summary`)).trim(), "Off at 06:45 Mon–Fri");
  assert.equal(await page.getAttribute(`${row} [role=switch]`, "aria-checked"), "true");
  // The form starts over.
  assert.equal(await page.inputValue(`${form} input[name=time]`), "07:00");
  assert.equal(await page.$$eval(`${form} .chip[aria-pressed=true]`, (els) => els.length), 0);

  // 3. Pause it: the same schedule, `enabled: false`.
  from = watch.seen.length;
  await page.tap(`${row} [role=switch]`);
  const paused = await waitMessage(watch, (m) => m.topic === added.topic, from);
  assert.equal(paused.retain, true);
  assert.deepEqual(JSON.parse(paused.payload), { id, device, relay: 0, enabled: false, rule: atRule });
  await page.waitForSelector(`${row}.paused [role=switch][aria-checked=false]`, { timeout: STEP_MS });
  await until("the gateway to pause it", async () => (await apiSchedule(gw, id)).body?.enabled === false);

  // 4. The form refuses what the gateway would ignore: nothing is published for it (the next
  //    message on the wire is the valid timer that follows).
  await page.tap(`${form} label.seg:has(input[name=schedule-kind][value=off_after]) span`);
  await page.fill(`${form} input[name=minutes]`, "0");
  from = watch.seen.length;
  await page.tap(`${form} button[type=submit]`);
  assert.match(await page.textContent(`${form} [role=alert]`), /from 1 to/);
  await page.fill(`${form} input[name=minutes]`, "15");
  assert.equal(await page.$(`${form} [role=alert]`), null, "editing clears the error");
  assert.equal((await page.textContent(`${form} .preview`)).trim(), "Off 15 min after switched on");
  await page.tap(`${form} button[type=submit]`);
  const timer = await waitMessage(watch, () => true, from);
  const timerId = timer.topic.slice(PREFIX.length);
  assert.notEqual(timerId, id);
  assert.deepEqual(JSON.parse(timer.payload), {
    id: timerId, device, relay: 0, enabled: true, rule: { kind: "off_after", seconds: 900 },
  });
  await page.waitForSelector(`li.schedule[data-schedule="${timerId}"]`, { timeout: STEP_MS });
  assert.equal(
    (await page.textContent(`li.schedule[data-schedule="${timerId}"] .summary`)).trim(),
    "Off 15 min after switched on",
  );

  // 5. A payload the gateway ignores, written by someone else: flagged, not fatal, deletable.
  const brokenTopic = `${PREFIX}broken`;
  await watch.client.publishAsync(brokenTopic, JSON.stringify({ device, rule: { kind: "at" } }), { retain: true, qos: 1 });
  const brokenRow = `li.schedule.invalid[data-schedule="broken"]`;
  await page.waitForSelector(brokenRow, { timeout: STEP_MS });
  assert.match(await page.textContent(brokenRow), /Ignored by the gateway/);
  assert.equal(await page.$(`${brokenRow} [role=switch]`), null, "no switch on an unusable schedule");
  await page.locator(section).screenshot({ path: join(ARTIFACTS, "e2e-11-schedules.png") });

  // 6. Delete: the first tap asks, the second publishes an empty retained message.
  for (const [topic, sel] of [[added.topic, row], [brokenTopic, brokenRow]]) {
    from = watch.seen.length;
    await page.tap(`${sel} button.delete`);
    assert.equal((await page.textContent(`${sel} button.delete`)).trim(), "Confirm");
    await page.tap(`${sel} button.delete`);
    const gone = await waitMessage(watch, (m) => m.topic === topic, from);
    assert.equal(gone.payload, "", "an empty payload deletes");
    assert.equal(gone.retain, true, "deleted with a retained message");
    await page.waitForSelector(sel, { state: "detached", timeout: STEP_MS });
  }
  await until("the gateway to drop the schedule", async () => (await apiSchedule(gw, id)).status === 404);
  // The broker holds no retained message for them any more. A new subscriber subscribes to
  // the deleted topics, then to the timer's: the broker queues a subscription's retained
  // messages in order, so once the timer's has arrived, none came for the deleted ones.
  const after = await watcher(gw.mqtt, [added.topic, brokenTopic]);
  extra.push(after.client);
  await after.client.subscribeAsync(timer.topic);
  await waitMessage(after, (m) => m.topic === timer.topic);
  assert.deepEqual(after.seen.map((m) => m.topic), [timer.topic]);

  // 7. No sideways scrolling with the form on a 320 px wide screen.
  await page.setViewportSize({ width: 320, height: 640 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at 320 px (overflow ${overflow}px)`);
  await page.locator(section).screenshot({ path: join(ARTIFACTS, "e2e-12-schedules-320px.png") });
}
