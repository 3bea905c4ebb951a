//! Browser MQTT client in WebAssembly: a thin driver of the `switchboard-mqtt` client state
//! machine over a `web-sys` WebSocket, for Rust (Yew) and JavaScript.
//!
//! - [`policy`]: reconnect back-off with full jitter, broker URL rotation, the offline publish
//!   queue and client ids, as plain Rust with native tests (virtual time);
//! - [`Options`], [`Error`] and the single-threaded [`chan`]nels: plain Rust too;
//! - on `wasm32` only: `Client` (the driver: socket, worker timer, window listeners) and, with
//!   the `js` feature (default), the MQTT.js-shaped JavaScript API (`connect`, `MqttClient`).

pub mod chan;
pub mod policy;

mod error;
mod options;

pub use error::Error;
pub use options::{AuthMethod, Options};
pub use switchboard_mqtt::{Bytes, LastWill, Properties, ProtocolVersion, Publish, QoS};

#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
pub mod dom;
#[cfg(all(target_arch = "wasm32", feature = "js"))]
mod js;
#[cfg(target_arch = "wasm32")]
pub mod timer;

#[cfg(target_arch = "wasm32")]
pub use client::{Client, ConnectionEvent, Message};
#[cfg(all(target_arch = "wasm32", feature = "js"))]
pub use js::{JsClient, connect};
