//! The Switchboard dashboard: the page a person opens on their phone to switch the kitchen
//! kettle off from the sofa.
//!
//! A Yew (CSR) app served by the gateway at `/`, talking MQTT over WebSocket to
//! `ws(s)://<same host>/mqtt` (or any broker set in the settings). The layers, from pure to DOM:
//!
//! - [`state`]: one [`Reducible`](yew::Reducible) [`state::AppState`] changed by
//!   [`state::Action`]s, wrapping the device model's `Registry` (pending commands, time-outs,
//!   availability, meta); what must go on the wire is queued as [`state::Effect`]s;
//! - [`vm`]: view models (rooms, cards, chart geometry, topic tree) computed from the state;
//! - [`schedule`]: schedules (run by the gateway) as the dashboard reads, checks and writes
//!   them;
//! - [`route`]: hash routes;
//! - [`port`]: the MQTT port ([`port::Connector`] / [`port::Session`]) the hooks drive;
//! - [`hooks`]: the session, timers, listeners and storage, each owned by an effect;
//! - [`components`]: one component per file.
//!
//! The state, view-model, schedule and route modules are plain Rust and unit-tested on the host.

pub mod browser;
#[cfg(target_arch = "wasm32")]
pub mod client;
pub mod components;
pub mod hooks;
pub mod port;
pub mod route;
pub mod schedule;
pub mod state;
pub mod vm;

pub use components::{App, AppProps};

#[cfg(target_arch = "wasm32")]
/// Mounts the dashboard on `<body>` with the real MQTT client, and registers the service worker.
pub fn start() {
    yew::Renderer::<App>::with_props(AppProps {
        connector: port::ConnectorHandle::new(client::WebSocketConnector),
        default_url: None,
    })
    .render();
    browser::register_service_worker();
}
