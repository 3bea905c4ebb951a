//! Small wrappers over the browser APIs the dashboard touches: the clock, `localStorage`, the
//! location, the theme attribute and the service worker. Failures (storage disabled, no
//! window in a worker) degrade to "nothing stored" rather than panics.

use wasm_bindgen::JsValue;

/// `localStorage` key of the custom broker URL.
pub const KEY_BROKER_URL: &str = "switchboard.broker_url";
/// `localStorage` key of the remembered credentials (`user\npassword`).
pub const KEY_CREDENTIALS: &str = "switchboard.credentials";
/// `localStorage` key of the theme.
pub const KEY_THEME: &str = "switchboard.theme";

/// Milliseconds since the epoch (`Date.now()`), the clock of every action.
#[must_use]
pub fn now_ms() -> u64 {
    // Date.now() is a positive integer of milliseconds well within f64's exact range.
    js_sys::Date::now() as u64
}

/// A random 32-bit number (`Math.random()`; not for secrets).
#[must_use]
pub fn random_u32() -> u32 {
    // A float in [0, 1) scaled to u32's range; the cast saturates.
    (js_sys::Math::random() * 4_294_967_296.0) as u32
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// Reads `key` from `localStorage`.
#[must_use]
pub fn load(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

/// Writes `key` (or removes it for `None`).
pub fn store(key: &str, value: Option<&str>) {
    if let Some(s) = storage() {
        let _ignored = match value {
            Some(v) => s.set_item(key, v),
            None => s.remove_item(key),
        };
    }
}

/// `location.hash`.
#[must_use]
pub fn hash() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

/// Sets `location.hash` unless it already is `hash` (setting it adds a history entry).
pub fn set_hash(hash: &str) {
    if let Some(w) = web_sys::window()
        && w.location().hash().ok().as_deref() != Some(hash)
    {
        let _ignored = w.location().set_hash(hash);
    }
}

/// The broker of the page's own origin: `ws(s)://<host>/mqtt`.
#[must_use]
pub fn same_origin_broker() -> String {
    let Some(location) = web_sys::window().map(|w| w.location()) else {
        return "ws://localhost/mqtt".to_owned();
    };
    let scheme = match location.protocol().ok().as_deref() {
        Some("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/mqtt")
}

/// Whether the system prefers a dark scheme.
#[must_use]
pub fn prefers_dark() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

/// Sets `data-theme` on `<html>` (the stylesheet keys off it).
pub fn apply_theme(value: &str) {
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ignored = root.set_attribute("data-theme", value);
    }
}

/// `navigator.onLine`.
#[must_use]
pub fn network_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// Registers `sw.js` with the build's version in its URL, so every new build installs a new
/// worker with a new cache. The version is the content hash trunk put in the app's script name
/// (`<link rel="modulepreload" href="/switchboard-www-<hash>.js">`); without one (a test page)
/// nothing is registered.
pub fn register_service_worker() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Some(doc) = window.document() else {
        return;
    };
    let version = doc
        .query_selector("link[rel=modulepreload][href*='switchboard-www-']")
        .ok()
        .flatten()
        .and_then(|l| l.get_attribute("href"))
        .and_then(|h| {
            h.rsplit("switchboard-www-")
                .next()
                .map(|v| v.trim_end_matches(".js").to_owned())
        });
    let Some(version) = version.filter(|v| !v.is_empty()) else {
        return;
    };
    let sw = window.navigator().service_worker();
    // Unsupported (http on a non-localhost origin) shows as a rejected promise: ignored.
    let _promise = sw.register(&format!("./sw.js?v={version}"));
}

/// Text of a JS error value, for messages.
#[must_use]
pub fn describe(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(value, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
