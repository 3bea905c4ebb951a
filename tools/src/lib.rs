//! Switchboard's client tools: programs that talk to a broker, not the broker itself.
//!
//! - [`mqtt_client`]: a small tokio MQTT client, a thin driver around the client state machine
//!   of `switchboard-mqtt`.
//! - [`sim`]: simulated smart plugs of every family (`switchboard sim`, and the household of
//!   `switchboard demo`), run over [`mqtt_client`] against any broker.
//! - [`bench`]: the load generator and the side-by-side comparison with Mosquitto
//!   (`switchboard bench`).
//!
//! The `switchboard` binary uses this crate for its `sim`, `bench` and `demo` subcommands. The
//! crate does not depend on the gateway: it is handed plain addresses.

pub mod bench;
pub mod mqtt_client;
pub mod sim;
