//! The gateway's normalised device channel: one topic per device carrying its [`Device`] state
//! as JSON, and one command topic taking `{"relay":0,"on":true}`, whatever convention the
//! device itself speaks.
//!
//! Embedded widgets, scripts and home-automation tools that do not want to learn every family
//! in `DEVICES.md` use this channel instead of the device's own topics:
//!
//! | topic | who publishes | payload |
//! |---|---|---|
//! | `switchboard/devices/<encoded id>` | the gateway, retained | [`DeviceView`] JSON; empty when the device is gone |
//! | `switchboard/devices/<encoded id>/set` | anyone allowed to switch it | [`SetCommand`]: `{"relay":0,"on":true}`, `ON`, `OFF` or `TOGGLE` |
//!
//! The id is written into one level as in [`crate::meta`]. A scoped token for one device
//! grants exactly these two topics ([`scope`]), so a widget can never reach another device.

use serde::{Deserialize, Serialize};

use crate::meta::encode_id;
use crate::model::{Availability, Device, DeviceId, Family, Relay};

/// Topic prefix of the device channel (followed by the encoded id).
pub const VIEW_PREFIX: &str = "switchboard/devices/";
/// The filter matching every state topic ([`is_view_topic`]), which only the gateway publishes.
pub const VIEW_FILTER: &str = "switchboard/devices/+";

/// The retained state topic of `id`.
#[must_use]
pub fn view_topic(id: &DeviceId) -> String {
    format!("{VIEW_PREFIX}{}", encode_id(id))
}

/// The command topic of `id`.
#[must_use]
pub fn set_topic(id: &DeviceId) -> String {
    format!("{VIEW_PREFIX}{}/set", encode_id(id))
}

/// The topic filters a client needs to watch and switch `id` through the device channel:
/// `(publish, subscribe)`.
#[must_use]
pub fn scope(id: &DeviceId) -> (String, String) {
    (set_topic(id), view_topic(id))
}

/// If `topic` is a command topic of the device channel, the device it addresses.
///
/// # Errors
/// [`SetError::BadId`] when the id level is not a valid encoding.
pub fn parse_set_topic(topic: &str) -> Option<Result<DeviceId, SetError>> {
    let level = topic.strip_prefix(VIEW_PREFIX)?.strip_suffix("/set")?;
    if level.is_empty() || level.contains('/') {
        return None;
    }
    Some(crate::meta::decode_id(level).map_err(|_| SetError::BadId(level.to_owned())))
}

/// Whether `topic` is a device's state topic on the channel (`switchboard/devices/<id>`, one
/// level): only the gateway publishes there, so brokers refuse clients that try.
#[must_use]
pub fn is_view_topic(topic: &str) -> bool {
    topic
        .strip_prefix(VIEW_PREFIX)
        .is_some_and(|level| !level.is_empty() && !level.contains('/'))
}

/// What the state topic carries: the device without its power history and last-seen time (so
/// it changes only when something a person sees changes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Stable identifier.
    pub id: DeviceId,
    /// Display name.
    pub name: String,
    /// Room, if known.
    pub room: Option<String>,
    /// The convention the device speaks.
    pub family: Family,
    /// Reachability.
    pub online: Availability,
    /// Switchable outputs with their confirmed state and any pending command.
    pub relays: Vec<Relay>,
    /// Active power in watts, if metered.
    pub power_w: Option<f64>,
    /// Energy used today in kWh, if reported.
    pub energy_today_kwh: Option<f64>,
    /// Energy counter in kWh, if reported.
    pub energy_total_kwh: Option<f64>,
}

impl DeviceView {
    /// The view of `device`.
    #[must_use]
    pub fn of(device: &Device) -> Self {
        Self {
            id: device.id.clone(),
            name: device.name.clone(),
            room: device.room.clone(),
            family: device.family,
            online: device.online,
            relays: device.relays.clone(),
            power_w: device.power_w,
            energy_today_kwh: device.energy_today_kwh,
            energy_total_kwh: device.energy_total_kwh,
        }
    }

    /// The JSON payload for the state topic.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a view of plain fields serialises")
    }
}

/// A command read from a `…/set` topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetCommand {
    /// 0-based relay.
    pub relay: u8,
    /// What to do with it.
    pub action: SetAction,
}

/// Switch on, off, or to the opposite of the confirmed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAction {
    /// Switch to this state.
    Set(bool),
    /// Switch to the opposite of the confirmed state.
    Toggle,
}

/// Why a command on the device channel was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The id level of the topic is not a valid encoding.
    #[error("`{0}` is not an encoded device id")]
    BadId(String),
    /// The payload is neither the JSON object nor `ON`/`OFF`/`TOGGLE`.
    #[error(
        "command payload must be {{\"relay\":N,\"on\":true|false}} or ON, OFF or TOGGLE, not `{0}`"
    )]
    BadPayload(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetJson {
    #[serde(default)]
    relay: u8,
    on: serde_json::Value,
}

impl SetCommand {
    /// Parses a command payload: `{"relay":0,"on":true}` (`relay` defaults to 0; `on` may also
    /// be `"toggle"`), or the plain words `ON`, `OFF`, `TOGGLE` (any case) for relay 0.
    ///
    /// # Errors
    /// [`SetError::BadPayload`] quoting (the start of) what was sent.
    pub fn parse(payload: &[u8]) -> Result<Self, SetError> {
        let bad = || {
            let text = String::from_utf8_lossy(payload);
            SetError::BadPayload(text.chars().take(64).collect())
        };
        let text = std::str::from_utf8(payload).map_err(|_| bad())?.trim();
        let word = |w: &str| match w.to_ascii_lowercase().as_str() {
            "on" => Some(SetAction::Set(true)),
            "off" => Some(SetAction::Set(false)),
            "toggle" => Some(SetAction::Toggle),
            _ => None,
        };
        if let Some(action) = word(text) {
            return Ok(Self { relay: 0, action });
        }
        let json: SetJson = serde_json::from_str(text).map_err(|_| bad())?;
        let action = match json.on {
            serde_json::Value::Bool(on) => SetAction::Set(on),
            serde_json::Value::String(w) => word(&w).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok(Self {
            relay: json.relay,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_encode_the_id_into_one_level() {
        let id = DeviceId::from("z2m:living/lamp");
        assert_eq!(view_topic(&id), "switchboard/devices/z2m:living%2Flamp");
        assert_eq!(set_topic(&id), "switchboard/devices/z2m:living%2Flamp/set");
        assert_eq!(
            scope(&id),
            (set_topic(&id), view_topic(&id)),
            "a token for one device gets exactly its two topics"
        );
        assert_eq!(parse_set_topic(&set_topic(&id)), Some(Ok(id)));
    }

    #[test]
    fn view_topics_are_one_level_under_the_prefix() {
        assert!(is_view_topic("switchboard/devices/tasmota:a"));
        assert!(!is_view_topic("switchboard/devices/tasmota:a/set"));
        assert!(!is_view_topic("switchboard/devices/"));
        assert!(!is_view_topic("switchboard/meta/tasmota:a"));
    }

    #[test]
    fn only_set_topics_are_commands() {
        assert_eq!(parse_set_topic("switchboard/devices/tasmota:a"), None);
        assert_eq!(parse_set_topic("switchboard/devices//set"), None);
        assert_eq!(parse_set_topic("switchboard/devices/a/b/set"), None);
        assert_eq!(parse_set_topic("cmnd/a/POWER"), None);
        assert_eq!(
            parse_set_topic("switchboard/devices/bad%2/set"),
            Some(Err(SetError::BadId("bad%2".to_owned())))
        );
    }

    #[test]
    fn commands_parse_from_json_and_words() {
        let set = |relay, on| SetCommand {
            relay,
            action: SetAction::Set(on),
        };
        assert_eq!(
            SetCommand::parse(br#"{"relay":1,"on":true}"#),
            Ok(set(1, true))
        );
        assert_eq!(SetCommand::parse(br#"{"on":false}"#), Ok(set(0, false)));
        assert_eq!(SetCommand::parse(b"ON"), Ok(set(0, true)));
        assert_eq!(SetCommand::parse(b" off\n"), Ok(set(0, false)));
        assert_eq!(
            SetCommand::parse(br#"{"relay":2,"on":"toggle"}"#),
            Ok(SetCommand {
                relay: 2,
                action: SetAction::Toggle
            })
        );
        assert_eq!(
            SetCommand::parse(b"TOGGLE").map(|c| c.action),
            Ok(SetAction::Toggle)
        );
    }

    #[test]
    fn bad_commands_are_named() {
        for payload in [
            &b"maybe"[..],
            br#"{"relay":0}"#,
            br#"{"relay":0,"on":1}"#,
            br#"{"relay":300,"on":true}"#,
            br#"{"relay":0,"on":true,"extra":1}"#,
            b"\xff\xfe",
            b"",
        ] {
            let err = SetCommand::parse(payload).unwrap_err();
            assert!(
                matches!(err, SetError::BadPayload(_)),
                "{payload:?} gave {err:?}"
            );
        }
        assert_eq!(
            SetCommand::parse(b"maybe").unwrap_err().to_string(),
            "command payload must be {\"relay\":N,\"on\":true|false} or ON, OFF or TOGGLE, not `maybe`"
        );
    }

    #[test]
    fn the_view_leaves_out_history_and_last_seen() {
        let mut registry = crate::Registry::new();
        registry.handle_message("tele/kettle/LWT", b"Online", true, 0);
        registry.handle_message("stat/kettle/POWER", b"ON", false, 10);
        let device = registry.devices().next().expect("discovered").clone();
        let json: serde_json::Value =
            serde_json::from_slice(&DeviceView::of(&device).to_json()).unwrap();
        assert_eq!(json["name"], "kettle");
        assert_eq!(json["relays"][0]["state"], "On");
        assert!(json.get("history").is_none() && json.get("last_seen_ms").is_none());
    }
}
