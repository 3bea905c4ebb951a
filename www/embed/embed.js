// <switchboard-switch>: a smart plug switch any web page can embed with two lines.
//
//   <script type="module" src="https://GATEWAY/embed.js"></script>
//   <switchboard-switch gateway="wss://GATEWAY/mqtt" device="tasmota:kitchen" token="sbt1...">
//   </switchboard-switch>
//
// The element speaks the gateway's device channel (`switchboard/devices/<id>` carries the
// device's state as retained JSON; `switchboard/devices/<id>/set` takes {"relay":N,"on":bool}),
// so it works for every plug family and a token scoped to one device (`switchboard token create
// --device ID`) is all it needs. Widgets with the same gateway and token share one MQTT
// connection; the WebAssembly MQTT client loads only when the first widget scrolls into view.
//
// Attributes: gateway (default: the gateway this script came from), device, token, relay
// (0-based, default 0), label (overrides the device's name). Theme with CSS custom properties on
// the element or an ancestor: --sb-accent, --sb-bg, --sb-fg, --sb-muted, --sb-off, --sb-danger,
// --sb-radius, --sb-font. Parts: card, switch, name, status, power.

const SCRIPT_URL = import.meta.url;
const VIEW_PREFIX = "switchboard/devices/";
/** How long a tap waits for the device to confirm before reverting, ms. */
const CONFIRM_MS = 10_000;
/** How long a subscribed device may stay silent before it is called unknown, ms. */
const UNKNOWN_MS = 3_000;
/** How long an unused connection stays open (a widget moved in the DOM keeps it), ms. */
const LINGER_MS = 2_000;

let clientModule;
/** The wasm MQTT client, fetched and compiled once, on first need. */
function loadClient() {
  clientModule ??= import(new URL("./widget/index.js", SCRIPT_URL).href);
  return clientModule;
}

/** The device id written into one topic level, as the gateway does (devices::meta::encode_id). */
export function encodeId(id) {
  let out = "";
  for (const ch of id) {
    const c = ch.codePointAt(0);
    if ("%/+#$".includes(ch) || c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      // A C1 control (U+0080 to U+009F) is written as its two UTF-8 bytes, %C2%80 to %C2%9F.
      if (c > 0x7f) out += "%C2";
      out += "%" + c.toString(16).toUpperCase().padStart(2, "0");
    } else {
      out += ch;
    }
  }
  return out;
}

/** `wss://host/prefix/mqtt` for the gateway that served this script. */
function defaultGateway() {
  const url = new URL(SCRIPT_URL);
  const scheme = url.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${url.host}${url.pathname.replace(/\/[^/]*$/, "")}/mqtt`;
}

const connections = new Map();

/** One MQTT connection shared by every widget with the same gateway and token. */
class Connection {
  static get(url, token) {
    const key = `${url}\n${token}`;
    let conn = connections.get(key);
    if (!conn) {
      conn = new Connection(key, url, token);
      connections.set(key, conn);
    }
    conn.users += 1;
    clearTimeout(conn.lingering);
    return conn;
  }

  constructor(key, url, token) {
    this.key = key;
    this.url = url;
    this.token = token;
    this.users = 0;
    this.lingering = 0;
    this.closed = false;
    /** topic -> Set of widgets watching it. */
    this.watchers = new Map();
    /** topic -> last view (null: the device is gone). */
    this.views = new Map();
    /** "connecting" | "online" | "offline" | "refused" */
    this.status = "connecting";
    this.client = null;
    this.ready = this.open();
  }

  async open() {
    const { connect } = await loadClient();
    for (let ceiling = 1_000; !this.closed; ceiling = Math.min(ceiling * 2, 30_000)) {
      try {
        const client = await connect(this.url, {
          protocolVersion: 5,
          keepalive: 30,
          username: this.token ? "token" : undefined,
          password: this.token || undefined,
          offlineExpiry: 5_000,
        });
        if (this.closed) {
          client.end();
          return null;
        }
        this.client = client;
        client.on("message", (topic, payload) => this.message(topic, payload));
        client.on("connect", () => this.setStatus("online"));
        client.on("offline", () => this.setStatus("offline"));
        this.setStatus("online");
        for (const topic of this.watchers.keys()) this.subscribe(topic);
        return client;
      } catch (err) {
        if (err.code === "refused") {
          this.setStatus("refused", err);
          return null;
        }
        this.setStatus("offline", err);
        // Full jitter: many pages coming back at once do not reconnect in step.
        await new Promise((ok) => setTimeout(ok, Math.random() * ceiling));
      }
    }
    return null;
  }

  setStatus(status, err) {
    this.status = status;
    this.error = err;
    for (const set of this.watchers.values()) for (const w of set) w.render();
  }

  message(topic, payload) {
    const set = this.watchers.get(topic);
    if (!set) return;
    let view = null;
    if (payload.length) {
      try {
        view = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
    }
    this.views.set(topic, view);
    for (const w of set) w.update(view);
  }

  subscribe(topic) {
    this.client
      ?.subscribe(topic, { qos: 0 })
      .then(() => {
        for (const w of this.watchers.get(topic) ?? []) w.subscribed();
      })
      .catch((err) => {
        for (const w of this.watchers.get(topic) ?? []) w.refused(err);
      });
  }

  watch(widget, topic) {
    let set = this.watchers.get(topic);
    if (!set) {
      set = new Set();
      this.watchers.set(topic, set);
      this.subscribe(topic);
    } else if (this.views.has(topic)) {
      widget.subscribed();
      widget.update(this.views.get(topic));
    }
    set.add(widget);
  }

  unwatch(widget, topic) {
    const set = this.watchers.get(topic);
    if (!set?.delete(widget) || set.size) return;
    this.watchers.delete(topic);
    this.views.delete(topic);
    this.client?.unsubscribe(topic).catch(() => {});
  }

  release() {
    this.users -= 1;
    if (this.users > 0) return;
    this.lingering = setTimeout(() => {
      if (this.users > 0) return;
      this.closed = true;
      connections.delete(this.key);
      this.client?.end();
    }, LINGER_MS);
  }

  publish(topic, payload) {
    if (!this.client) return Promise.reject(Object.assign(new Error("not connected"), { code: "dropped" }));
    return this.client.publish(topic, payload, { qos: 1 });
  }
}

const STYLE = `
:host{display:inline-block;width:var(--sb-width,300px);max-width:100%;font:15px/1.3 var(--sb-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
--a:var(--sb-accent,#0a7d5a);--bg:var(--sb-bg,#fff);--fg:var(--sb-fg,#16191d);--mu:var(--sb-muted,#5f6873);--off:var(--sb-off,#c3c9d1);--bad:var(--sb-danger,#b42318)}
@media (prefers-color-scheme:dark){:host{--bg:var(--sb-bg,#171b21);--fg:var(--sb-fg,#e8ebef);--mu:var(--sb-muted,#9aa4b0);--off:var(--sb-off,#4a525c)}}
.card{display:flex;align-items:center;gap:12px;padding:12px 14px;background:var(--bg);color:var(--fg);border-radius:var(--sb-radius,14px);box-shadow:0 1px 3px #0003}
.text{flex:1;min-width:0}.name{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.status{color:var(--mu);font-size:13px}.power{color:var(--mu);font-variant-numeric:tabular-nums;font-size:13px}
[data-state=error] .status{color:var(--bad)}
button{all:unset;box-sizing:border-box;width:56px;height:34px;min-width:56px;border-radius:17px;background:var(--off);position:relative;cursor:pointer;transition:background .2s}
button::after{content:"";position:absolute;top:3px;left:3px;width:28px;height:28px;border-radius:50%;background:#fff;box-shadow:0 1px 2px #0005;transition:transform .2s}
button[aria-checked=true]{background:var(--a)}button[aria-checked=true]::after{transform:translateX(22px)}
button:focus-visible{outline:3px solid var(--a);outline-offset:2px}
button:disabled{cursor:default;opacity:.45}
[data-state=pending] button{animation:p 1s ease-in-out infinite}@keyframes p{50%{opacity:.55}}
`;

/** `switchboard-switch`: see the top of this file. */
export class SwitchboardSwitch extends HTMLElement {
  static observedAttributes = ["gateway", "device", "token", "relay", "label"];

  /** Open shared connections (for tests and diagnostics). */
  static get connectionCount() {
    return connections.size;
  }

  #conn = null;
  #topic = null;
  #view = undefined;
  #subscribed = false;
  #denied = null;
  #pending = null;
  #pendingTimer = 0;
  #unknownTimer = 0;
  #subscribedAt = 0;
  #message = "";
  #messageUntil = 0;
  #observer = null;
  #els;

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${STYLE}</style><div class="card" part="card"><button type="button" role="switch" aria-checked="false" part="switch" disabled></button><div class="text"><div class="name" part="name"></div><div class="status" part="status" aria-live="polite"></div></div><div class="power" part="power"></div></div>`;
    this.#els = {
      card: root.querySelector(".card"),
      button: root.querySelector("button"),
      name: root.querySelector(".name"),
      status: root.querySelector(".status"),
      power: root.querySelector(".power"),
    };
    this.#els.button.addEventListener("click", () => this.#tap());
  }

  connectedCallback() {
    this.render();
    if (this.#conn || this.#observer) return;
    if (!("IntersectionObserver" in window)) {
      this.#attach();
      return;
    }
    this.#observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((e) => e.isIntersecting)) return;
        this.#observer?.disconnect();
        this.#observer = null;
        this.#attach();
      },
      { rootMargin: "200px" },
    );
    this.#observer.observe(this);
  }

  disconnectedCallback() {
    this.#observer?.disconnect();
    this.#observer = null;
    this.#detach();
  }

  attributeChangedCallback(_name, before, after) {
    if (before === after) return;
    if (this.#conn) {
      this.#detach();
      this.#attach();
    } else {
      this.render();
    }
  }

  get #relay() {
    const n = Number.parseInt(this.getAttribute("relay") ?? "0", 10);
    return Number.isInteger(n) && n >= 0 ? n : 0;
  }

  #attach() {
    const device = this.getAttribute("device");
    if (!device || !this.isConnected) {
      this.render();
      return;
    }
    this.#conn = Connection.get(this.getAttribute("gateway") || defaultGateway(), this.getAttribute("token") ?? "");
    this.#topic = VIEW_PREFIX + encodeId(device);
    this.#conn.watch(this, this.#topic);
    this.render();
  }

  #detach() {
    if (!this.#conn) return;
    this.#conn.unwatch(this, this.#topic);
    this.#conn.release();
    this.#conn = null;
    this.#topic = null;
    this.#view = undefined;
    this.#subscribed = false;
    this.#denied = null;
    this.#settle("");
    clearTimeout(this.#unknownTimer);
  }

  /** The connection acknowledged the subscription; retained state follows at once. */
  subscribed() {
    this.#subscribed = true;
    this.#denied = null;
    clearTimeout(this.#unknownTimer);
    this.#subscribedAt = Date.now();
    if (this.#view === undefined) this.#unknownTimer = setTimeout(() => this.render(), UNKNOWN_MS);
    this.render();
  }

  /** The gateway refused the subscription (the token does not cover this device). */
  refused(err) {
    this.#denied = err;
    this.render();
  }

  /** A new view of the device (null: it is gone). */
  update(view) {
    this.#view = view;
    const relay = view?.relays?.[this.#relay];
    if (this.#pending !== null && relay && !relay.pending && relay.state === (this.#pending ? "On" : "Off")) {
      this.#settle("");
    }
    this.render();
    this.dispatchEvent(new CustomEvent("switchboard-state", { detail: view }));
  }

  /** Ends a pending tap, showing `message` (if any) for a few seconds. */
  #settle(message) {
    clearTimeout(this.#pendingTimer);
    this.#pending = null;
    this.#message = message;
    this.#messageUntil = Date.now() + 6_000;
    if (message) setTimeout(() => this.render(), 6_000);
  }

  #tap() {
    const relay = this.#view?.relays?.[this.#relay];
    if (!relay || this.#pending !== null || relay.pending || this.#view.online === "Offline") return;
    const on = relay.state !== "On";
    this.#pending = on;
    this.#message = "";
    this.#pendingTimer = setTimeout(() => {
      this.#settle("Not confirmed by the device");
      this.render();
    }, CONFIRM_MS);
    this.render();
    this.#conn
      .publish(`${this.#topic}/set`, JSON.stringify({ relay: this.#relay, on }))
      .catch((err) => {
        this.#settle(err.code === "rejected" ? "Not allowed to switch this device" : `Not sent: ${err.message}`);
        this.render();
      });
  }

  /** Paints the current state into the shadow DOM. */
  render() {
    const { card, button, name, status, power } = this.#els;
    const view = this.#view;
    const relay = view?.relays?.[this.#relay];
    const label = this.getAttribute("label") || view?.name || this.getAttribute("device") || "Switch";
    let state;
    let text;
    if (!this.getAttribute("device")) {
      [state, text] = ["error", "No device attribute"];
    } else if (!this.#conn) {
      [state, text] = ["idle", ""];
    } else if (this.#conn.status === "refused") {
      [state, text] = ["error", "Gateway refused the token"];
    } else if (this.#denied) {
      [state, text] = ["error", "Not allowed to see this device"];
    } else if (this.#conn.status !== "online" && view === undefined) {
      [state, text] = ["connecting", this.#conn.status === "offline" ? "Gateway unreachable, retrying" : "Connecting"];
    } else if (view === undefined) {
      const waited = this.#subscribed && Date.now() - this.#subscribedAt >= UNKNOWN_MS;
      [state, text] = waited ? ["error", "Unknown device"] : ["connecting", "Loading"];
    } else if (view === null || !relay) {
      [state, text] = ["error", "Unknown device"];
    } else if (view.online === "Offline") {
      [state, text] = ["offline", "Offline"];
    } else if (this.#pending !== null || relay.pending) {
      const want = this.#pending ?? relay.pending.want;
      [state, text] = ["pending", want ? "Switching on" : "Switching off"];
    } else if (this.#message && Date.now() < this.#messageUntil) {
      [state, text] = ["error", this.#message];
    } else {
      [state, text] = [relay.state === "On" ? "on" : "off", relay.state === "Unknown" ? "State unknown" : relay.state];
    }
    if (this.#conn && this.#conn.status === "offline" && view) text += " (reconnecting)";
    card.dataset.state = state;
    this.dataset.state = state;
    name.textContent = label;
    status.textContent = text;
    const checked = this.#pending ?? relay?.state === "On";
    button.setAttribute("aria-checked", String(Boolean(checked)));
    button.setAttribute("aria-label", label);
    button.disabled = !relay || view?.online === "Offline" || this.#denied !== null || state === "pending";
    power.textContent = typeof view?.power_w === "number" ? `${view.power_w.toFixed(view.power_w < 10 ? 1 : 0)} W` : "";
  }
}

if (!customElements.get("switchboard-switch")) {
  customElements.define("switchboard-switch", SwitchboardSwitch);
}
