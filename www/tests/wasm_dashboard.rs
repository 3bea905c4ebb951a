//! Component tests in headless Chromium: the whole [`App`] mounted with a fake MQTT connector
//! that records what the dashboard subscribes and publishes, and lets the test play the broker.
//!
//! Waits are on conditions (the DOM reaching a state), yielding to the event loop between
//! checks, never fixed sleeps.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::future::TimeoutFuture;
use switchboard_devices::OutgoingMessage;
use switchboard_www::port::{
    CloseCause, ConnectOptions, Connector, ConnectorHandle, Session, SessionEvent,
};
use switchboard_www::{App, AppProps};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::{Element, HtmlElement, HtmlInputElement};
use yew::{AppHandle, Callback};

wasm_bindgen_test_configure!(run_in_browser);

#[derive(Default)]
struct Recorded {
    events: Option<Callback<SessionEvent>>,
    connects: Vec<ConnectOptions>,
    subscribed: Vec<String>,
    published: Vec<OutgoingMessage>,
    dropped: usize,
}

/// The fake broker side.
#[derive(Clone, Default)]
struct Fake(Rc<RefCell<Recorded>>);

struct FakeSession(Rc<RefCell<Recorded>>);

impl Session for FakeSession {
    fn subscribe(&self, filters: Vec<String>) {
        self.0.borrow_mut().subscribed.extend(filters);
    }
    fn publish(&self, message: OutgoingMessage) {
        self.0.borrow_mut().published.push(message);
    }
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        self.0.borrow_mut().dropped += 1;
    }
}

impl Connector for Fake {
    fn connect(&self, options: ConnectOptions, events: Callback<SessionEvent>) -> Box<dyn Session> {
        let mut r = self.0.borrow_mut();
        r.connects.push(options);
        r.events = Some(events);
        Box::new(FakeSession(self.0.clone()))
    }
}

impl Fake {
    fn emit(&self, event: SessionEvent) {
        let cb = self
            .0
            .borrow()
            .events
            .clone()
            .expect("a session was opened");
        cb.emit(event);
    }
    fn message(&self, topic: &str, payload: &str, retain: bool) {
        self.emit(SessionEvent::Message {
            topic: topic.to_owned(),
            payload: payload.as_bytes().to_vec(),
            retain,
        });
    }
    fn published(&self) -> Vec<(String, String, bool)> {
        self.0
            .borrow()
            .published
            .iter()
            .map(|m| (m.topic.clone(), m.payload_str().into_owned(), m.retain))
            .collect()
    }
}

struct Mounted {
    fake: Fake,
    root: Element,
    app: Option<AppHandle<App>>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.destroy();
        }
        self.root.remove();
    }
}

fn document() -> web_sys::Document {
    web_sys::window().unwrap().document().unwrap()
}

fn mount() -> Mounted {
    let w = web_sys::window().unwrap();
    w.local_storage().unwrap().unwrap().clear().unwrap();
    w.location().set_hash("").unwrap();
    let root = document().create_element("div").unwrap();
    document().body().unwrap().append_child(&root).unwrap();
    let fake = Fake::default();
    let app = yew::Renderer::<App>::with_root_and_props(
        root.clone(),
        AppProps {
            connector: ConnectorHandle::new(fake.clone()),
            default_url: Some("ws://test/mqtt".to_owned()),
        },
    )
    .render();
    Mounted {
        fake,
        root,
        app: Some(app),
    }
}

impl Mounted {
    fn query(&self, selector: &str) -> Option<Element> {
        self.root.query_selector(selector).unwrap()
    }

    /// Waits until `selector` matches (yielding to the event loop between checks).
    async fn wait_for(&self, selector: &str) -> Element {
        for _ in 0..500 {
            if let Some(e) = self.query(selector) {
                return e;
            }
            TimeoutFuture::new(0).await;
        }
        panic!(
            "{selector} never appeared; page: {}",
            self.root.inner_html()
        );
    }

    async fn wait_until(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        for _ in 0..500 {
            if cond(self) {
                return;
            }
            TimeoutFuture::new(0).await;
        }
        panic!("{what} never happened; page: {}", self.root.inner_html());
    }

    /// Connected with an online Tasmota plug `kitchen` (off) and a Shelly (on) in "Kitchen".
    async fn live_with_plugs(&self) {
        self.wait_until("a session", |m| m.fake.0.borrow().events.is_some())
            .await;
        self.fake.emit(SessionEvent::Connected);
        self.fake.message("tele/kitchen/LWT", "Online", true);
        self.fake.message("stat/kitchen/POWER", "OFF", true);
        self.fake.message("shellies/plug1/online", "true", true);
        self.fake.message("shellies/plug1/relay/0", "on", true);
        self.fake
            .message("shellies/plug1/relay/0/power", "42.4", false);
        self.fake.message(
            "switchboard/meta/tasmota:kitchen",
            r#"{"name":"Kettle","room":"Kitchen"}"#,
            true,
        );
        self.wait_for("[data-device='tasmota:kitchen'] [role=switch][aria-checked=false]")
            .await;
    }
}

fn click(e: &Element) {
    e.dyn_ref::<HtmlElement>().unwrap().click();
}

#[wasm_bindgen_test]
async fn subscribes_and_renders_retained_state() {
    let m = mount();
    m.live_with_plugs().await;
    // Effects run after the render that queued them.
    m.wait_until("subscriptions", |m| {
        !m.fake.0.borrow().subscribed.is_empty()
    })
    .await;
    let subs = m.fake.0.borrow().subscribed.clone();
    assert!(subs.iter().any(|s| s == "tele/+/+"));
    assert!(subs.iter().any(|s| s == "switchboard/meta/#"));
    assert_eq!(m.fake.0.borrow().connects[0].url, "ws://test/mqtt");
    m.wait_for("[data-conn=live]").await;
    let kitchen = m.wait_for("section[aria-labelledby='room-Kitchen']").await;
    assert!(kitchen.text_content().unwrap().contains("Kettle"));
    let shelly = m
        .wait_for("[data-device='shelly-gen1:plug1'] [role=switch]")
        .await;
    assert_eq!(
        shelly.get_attribute("aria-checked").as_deref(),
        Some("true")
    );
    assert!(
        m.query("[data-device='shelly-gen1:plug1'] .power")
            .unwrap()
            .text_content()
            .unwrap()
            .contains("42 W")
    );
}

#[wasm_bindgen_test]
async fn tap_is_pending_until_confirmed() {
    let m = mount();
    m.live_with_plugs().await;
    let switch = m
        .wait_for("[data-device='tasmota:kitchen'] [role=switch]")
        .await;
    click(&switch);
    m.wait_for(
        "[data-device='tasmota:kitchen'] [role=switch][data-state=pending-on][aria-busy=true]",
    )
    .await;
    m.wait_until("a publish", |m| !m.fake.published().is_empty())
        .await;
    assert_eq!(
        m.fake.published(),
        vec![("cmnd/kitchen/POWER".to_owned(), "ON".to_owned(), false)]
    );
    m.fake.message("stat/kitchen/POWER", "ON", false);
    let on = m
        .wait_for("[data-device='tasmota:kitchen'] [role=switch][data-state=on]")
        .await;
    assert_eq!(on.get_attribute("aria-checked").as_deref(), Some("true"));
    assert!(on.get_attribute("aria-busy").is_none());
}

#[wasm_bindgen_test]
async fn offline_device_is_greyed_and_disabled() {
    let m = mount();
    m.live_with_plugs().await;
    m.fake.message("tele/kitchen/LWT", "Offline", true);
    let card = m
        .wait_for("li.card.offline[data-device='tasmota:kitchen']")
        .await;
    let switch = card.query_selector("[role=switch]").unwrap().unwrap();
    assert!(switch.has_attribute("disabled"));
    click(&switch);
    assert!(m.fake.published().is_empty());
}

#[wasm_bindgen_test]
async fn all_off_switches_off_the_room() {
    let m = mount();
    m.live_with_plugs().await;
    m.fake.message("stat/kitchen/POWER", "ON", false);
    let button = m
        .wait_for("section[aria-labelledby='room-Kitchen'] .room-head button:not([disabled])")
        .await;
    click(&button);
    m.wait_until("a publish", |m| !m.fake.published().is_empty())
        .await;
    assert_eq!(
        m.fake.published(),
        vec![("cmnd/kitchen/POWER".to_owned(), "OFF".to_owned(), false)]
    );
}

#[wasm_bindgen_test]
async fn banner_shows_reconnecting_and_reconnects() {
    let m = mount();
    m.live_with_plugs().await;
    m.fake.emit(SessionEvent::Closed(CloseCause::Lost(
        "socket closed".into(),
    )));
    let banner = m.wait_for("[data-conn=reconnecting]").await;
    assert!(
        banner
            .text_content()
            .unwrap()
            .contains("Reconnecting in 1 s")
    );
    // Switches are disabled while not live.
    assert!(
        m.query("[data-device='tasmota:kitchen'] [role=switch]")
            .unwrap()
            .has_attribute("disabled")
    );
    // "Retry now" opens a new session at once.
    click(&banner.query_selector("button").unwrap().unwrap());
    m.wait_until("a second session", |m| {
        m.fake.0.borrow().connects.len() == 2
    })
    .await;
    m.fake.emit(SessionEvent::Connected);
    m.wait_for("[data-conn=live]").await;
}

#[wasm_bindgen_test]
async fn login_when_the_broker_wants_credentials() {
    let m = mount();
    m.wait_until("a session", |m| m.fake.0.borrow().events.is_some())
        .await;
    m.fake.emit(SessionEvent::Closed(CloseCause::NotAuthorized(
        "connection refused: NotAuthorized".into(),
    )));
    let form = m.wait_for("section.login form").await;
    let inputs = form.query_selector_all("input").unwrap();
    let input = |i| {
        inputs
            .item(i)
            .unwrap()
            .dyn_into::<HtmlInputElement>()
            .unwrap()
    };
    input(0).set_value("alice");
    input(1).set_value("secret");
    input(2).set_checked(true);
    click(&form.query_selector("button[type=submit]").unwrap().unwrap());
    m.wait_until("a session with credentials", |m| {
        m.fake.0.borrow().connects.len() == 2
    })
    .await;
    let last = m.fake.0.borrow().connects[1].clone();
    assert_eq!(last.username.as_deref(), Some("alice"));
    assert_eq!(last.password.as_deref(), Some("secret"));
    m.wait_until("credentials remembered", |_| {
        web_sys::window()
            .unwrap()
            .local_storage()
            .unwrap()
            .unwrap()
            .get_item("switchboard.credentials")
            .unwrap()
            .as_deref()
            == Some("alice\nsecret")
    })
    .await;
    assert!(m.query("section.login").is_none());
}

#[wasm_bindgen_test]
async fn detail_view_renames_with_a_retained_meta_message() {
    let m = mount();
    m.live_with_plugs().await;
    m.fake.message("shellies/plug1/relay/0/power", "100", false);
    let link = m
        .wait_for("[data-device='shelly-gen1:plug1'] a.card-name")
        .await;
    click(&link);
    m.wait_for("section.detail svg path.line").await;
    let form = m.wait_for("section.detail form.meta").await;
    let inputs = form.query_selector_all("input").unwrap();
    let input = |i| {
        inputs
            .item(i)
            .unwrap()
            .dyn_into::<HtmlInputElement>()
            .unwrap()
    };
    input(0).set_value("Heater");
    input(1).set_value("Office");
    click(&form.query_selector("button[type=submit]").unwrap().unwrap());
    m.wait_until("a publish", |m| !m.fake.published().is_empty())
        .await;
    let (topic, payload, retain) = m.fake.published().remove(0);
    assert_eq!(topic, "switchboard/meta/shelly-gen1:plug1");
    assert!(retain);
    assert!(payload.contains("\"Heater\"") && payload.contains("\"Office\""));
    // The broker echoes it; the view follows.
    m.fake.message(&topic, &payload, true);
    m.wait_until("the new name", |m| {
        m.query("#detail-title")
            .and_then(|h| h.text_content())
            .as_deref()
            == Some("Heater")
    })
    .await;
    // Leave the hash clean for the next test.
    web_sys::window().unwrap().location().set_hash("").unwrap();
}

#[wasm_bindgen_test]
async fn detail_view_adds_a_schedule_and_reports_a_refusal() {
    let m = mount();
    m.live_with_plugs().await;
    let link = m
        .wait_for("[data-device='tasmota:kitchen'] a.card-name")
        .await;
    click(&link);
    let form = m.wait_for("section.schedules form.schedule-form").await;
    // The defaults: on at 07:00 every day.
    assert_eq!(
        form.query_selector(".preview")
            .unwrap()
            .and_then(|p| p.text_content())
            .as_deref(),
        Some("On at 07:00 every day")
    );
    click(&form.query_selector("button[type=submit]").unwrap().unwrap());
    m.wait_until("a publish", |m| !m.fake.published().is_empty())
        .await;
    let (topic, payload, retain) = m.fake.published().remove(0);
    assert!(
        topic.starts_with("switchboard/schedules/kitchen-"),
        "{topic}"
    );
    assert!(retain);
    assert_eq!(m.fake.0.borrow().published[0].qos, 1);
    assert!(
        payload.contains(r#""device":"tasmota:kitchen""#)
            && payload.contains(r#""rule":{"kind":"at","time":"07:00","days":[],"on":true}"#),
        "{payload}"
    );
    // The broker echoes it: listed with its summary.
    m.fake.message(&topic, &payload, true);
    let row = m.wait_for("li.schedule .summary").await;
    assert_eq!(row.text_content().as_deref(), Some("On at 07:00 every day"));
    // A refused publish shows as a toast.
    m.fake.emit(SessionEvent::PublishFailed {
        topic,
        reason: "rejected by the broker".to_owned(),
    });
    let toast = m.wait_for(".toast.error").await;
    assert!(
        toast
            .text_content()
            .unwrap()
            .contains("The schedule was not saved: rejected by the broker")
    );
    web_sys::window().unwrap().location().set_hash("").unwrap();
}

#[wasm_bindgen_test]
async fn topic_view_shows_last_payloads() {
    let m = mount();
    m.live_with_plugs().await;
    web_sys::window()
        .unwrap()
        .location()
        .set_hash("#/topics")
        .unwrap();
    let tree = m.wait_for("ul.tree").await;
    let text = tree.text_content().unwrap();
    assert!(text.contains("kitchen") && text.contains("Online"));
    web_sys::window().unwrap().location().set_hash("").unwrap();
}

#[wasm_bindgen_test]
async fn dropping_the_app_closes_the_session() {
    let mut m = mount();
    m.wait_until("a session", |m| m.fake.0.borrow().events.is_some())
        .await;
    m.app.take().unwrap().destroy();
    let fake = m.fake.clone();
    for _ in 0..100 {
        if fake.0.borrow().dropped == 1 {
            return;
        }
        TimeoutFuture::new(0).await;
    }
    panic!("session not dropped");
}

#[wasm_bindgen_test]
async fn unconfirmed_toggle_reverts_with_a_notice() {
    let m = mount();
    m.live_with_plugs().await;
    let sel = "[data-device='tasmota:kitchen'] [role=switch]";
    click(&m.wait_for(sel).await);
    m.wait_for(&format!("{sel}[data-state=pending-on]")).await;
    // The registry's time-out is 5 s; nothing confirms. Wait for the outcome, checking every
    // 100 ms (a condition, not a fixed sleep).
    for _ in 0..100 {
        if m.query(".toast.error").is_some() {
            break;
        }
        TimeoutFuture::new(100).await;
    }
    let toast = m.wait_for(".toast.error").await;
    assert!(
        toast
            .text_content()
            .unwrap()
            .contains("Kettle did not respond (still off)")
    );
    let switch = m.wait_for(&format!("{sel}[data-state=off]")).await;
    assert!(switch.get_attribute("aria-busy").is_none());
    // Dismissing removes it.
    click(&toast.query_selector("button").unwrap().unwrap());
    m.wait_until("the notice gone", |m| m.query(".toast").is_none())
        .await;
}

#[wasm_bindgen_test]
async fn theme_toggle_sets_and_stores_the_theme() {
    let m = mount();
    let button = m.wait_for("header .icon").await;
    let root = document().document_element().unwrap();
    m.wait_until("system theme applied", |_| {
        root.get_attribute("data-theme").as_deref() == Some("system")
    })
    .await;
    click(&button);
    m.wait_until("an explicit theme", |_| {
        matches!(
            root.get_attribute("data-theme").as_deref(),
            Some("light" | "dark")
        )
    })
    .await;
    let stored = web_sys::window()
        .unwrap()
        .local_storage()
        .unwrap()
        .unwrap()
        .get_item("switchboard.theme")
        .unwrap();
    assert_eq!(stored, root.get_attribute("data-theme"));
}
