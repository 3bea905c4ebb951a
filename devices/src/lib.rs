//! The Switchboard smart plug device model.
//!
//! Plugs in real homes speak one of several MQTT conventions (see `DEVICES.md`): Home Assistant
//! discovery ([`homeassistant`]), Tasmota ([`tasmota`]), Shelly Gen1 ([`shelly_gen1`]), Shelly
//! Gen2+ ([`shelly_gen2`]), Zigbee2MQTT ([`zigbee2mqtt`]), or a plain topic the user describes
//! by hand ([`manual`]). This crate reads all of them into one [`Device`] model and writes
//! commands back in exactly the form each family expects. [`view`] defines the gateway's
//! normalised device channel (`switchboard/devices/<id>`), one topic pair per device for
//! widgets and scripts that do not speak every family.
//!
//! It is sans-I/O and clock-free so the gateway (tokio), the simulator and the Yew dashboard
//! (wasm32) share it: the [`Registry`] takes received messages and the current time in
//! milliseconds and returns [`Change`]s and [`OutgoingMessage`]s for the caller to publish.
//!
//! Rules it enforces: commands are never retained; a toggle is [`Pending`] until the device's
//! state topic confirms it and reverts after a timeout ([`Registry::tick`]); offline devices
//! refuse commands; retained state is applied on first paint; incoming values are parsed
//! liberally and a bad payload never erases good state.

pub mod civil;
pub mod homeassistant;
pub mod manual;
pub mod meta;
pub mod model;
pub mod registry;
pub mod schedule;
pub mod shelly_gen1;
pub mod shelly_gen2;
pub mod tasmota;
pub mod view;
pub mod zigbee2mqtt;

mod error;
mod parse;

pub use error::{CommandError, MessageError, MetaError};
pub use meta::{Meta, decode_id, encode_id, meta_topic};
pub use model::{
    Availability, Change, Device, DeviceId, Family, ManualSwitch, OutgoingMessage, Pending,
    PowerHistory, PowerSample, Relay, RelayState,
};
pub use registry::{Registry, RegistryConfig, SUBSCRIPTIONS, topic_matches};
pub use view::{DeviceView, SetAction, SetCommand, SetError};
