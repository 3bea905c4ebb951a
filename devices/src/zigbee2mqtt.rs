//! Zigbee2MQTT: a bridge publishing every Zigbee device under `zigbee2mqtt/<friendly name>`.
//!
//! Read:
//! - `zigbee2mqtt/bridge/devices`: the retained device list. Devices exposing a `switch` or
//!   `light` with a binary `state` feature become [`crate::Device`]s, one relay per such expose
//!   (multi-endpoint devices expose `state_l1`, `state_l2`, ...); devices missing from a new list
//!   are removed;
//! - `zigbee2mqtt/<name>`: JSON state with `state` / `state_<endpoint>` (`ON`/`OFF`), `power` (W),
//!   `energy` (kWh), `linkquality`, ... A state message of a name the list has not announced also
//!   discovers the device (groups, or the list not retained);
//! - `zigbee2mqtt/<name>/availability`: `online` / `offline`, or `{"state":"online"}` since 1.35.
//!
//! `<name>` may contain `/`, so the suffixes are stripped from the right; topics ending in
//! `/set`, `/get`, `/set/<attr>`, `/get/<attr>` are commands (ours included) and never state.
//!
//! Written: `zigbee2mqtt/<name>/set` with `{"state":"ON"}` (or `{"state_l2":"OFF"}` for an
//! endpoint, using the expose's `value_on` / `value_off`), never retained.

use serde_json::Value;
use switchboard_mqtt::topic::validate_topic_name;

use crate::error::MessageError;
use crate::model::{Observation, OutgoingMessage};
use crate::parse;

/// The bridge's base topic.
pub(crate) const BASE: &str = "zigbee2mqtt";

/// One switchable endpoint of a Zigbee device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Z2mRelay {
    /// The state property: `state`, `state_l1`, `state_left`, ...
    pub(crate) property: String,
    pub(crate) value_on: String,
    pub(crate) value_off: String,
    /// The endpoint name, if the expose has one.
    pub(crate) endpoint: Option<String>,
}

impl Z2mRelay {
    pub(crate) fn new(property: &str) -> Self {
        Self {
            property: property.to_owned(),
            value_on: "ON".to_owned(),
            value_off: "OFF".to_owned(),
            endpoint: property.strip_prefix("state_").map(str::to_owned),
        }
    }

    /// Whether this is an endpoint property (`state_<ep>`) rather than the plain `state`.
    pub(crate) fn is_endpoint(&self) -> bool {
        self.property != "state"
    }
}

/// One entry of `bridge/devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Z2mInfo {
    pub(crate) name: String,
    /// Switchable endpoints; empty for sensors, remotes, the coordinator.
    pub(crate) relays: Vec<Z2mRelay>,
    /// `vendor model` or the definition's description, for a default display name.
    pub(crate) description: Option<String>,
}

/// What a Zigbee2MQTT message is about.
#[derive(Debug, PartialEq)]
pub(crate) enum Z2mMessage {
    /// The full device list.
    Devices(Vec<Z2mInfo>),
    /// Availability of `name`.
    Availability { name: String, up: bool },
    /// A state message: `(property, on)` pairs and readings.
    State {
        name: String,
        relays: Vec<(String, bool)>,
        obs: Observation,
    },
}

/// Reads a Zigbee2MQTT topic; `None` for topics that carry nothing for the model.
pub(crate) fn parse(topic: &str, payload: &[u8]) -> Option<Result<Z2mMessage, MessageError>> {
    let rest = topic.strip_prefix(BASE)?.strip_prefix('/')?;
    if rest == "bridge/devices" {
        return Some(devices(topic, payload));
    }
    if rest.starts_with("bridge/") || rest.is_empty() {
        return None;
    }
    let levels: Vec<&str> = rest.split('/').collect();
    let n = levels.len();
    let is_command = |i: usize| n > i && matches!(levels[n - 1 - i], "set" | "get");
    if is_command(0) || is_command(1) {
        return None;
    }
    if let Some(name) = rest.strip_suffix("/availability") {
        if name.is_empty() {
            return None;
        }
        return Some(availability(topic, payload, name));
    }
    Some(state(topic, payload, rest))
}

fn availability(topic: &str, payload: &[u8], name: &str) -> Result<Z2mMessage, MessageError> {
    let text = parse::text(topic, payload)?;
    let up = parse::availability(text).ok_or_else(|| parse::invalid(topic, text))?;
    Ok(Z2mMessage::Availability {
        name: name.to_owned(),
        up,
    })
}

fn state(topic: &str, payload: &[u8], name: &str) -> Result<Z2mMessage, MessageError> {
    let value = parse::json(topic, payload)?;
    let Value::Object(map) = value else {
        return Err(parse::invalid(topic, "non-object JSON"));
    };
    let mut relays = Vec::new();
    for (key, v) in &map {
        if key == "state" || key.starts_with("state_") {
            // Non-switch `state_*` keys (e.g. `state_action`) carry no on/off: skip them.
            if let Some(on) = parse::json_on_off(v) {
                relays.push((key.clone(), on));
            } else if key == "state" && !v.is_null() {
                return Err(parse::invalid(topic, &v.to_string()));
            }
        }
    }
    // Multi-endpoint devices may mirror one endpoint in a plain `state`: endpoints win.
    if relays.iter().any(|(k, _)| k != "state") {
        relays.retain(|(k, _)| k != "state");
    }
    let mut obs = Observation::default();
    if let Some(w) = map.get("power").and_then(parse::json_number) {
        obs.power.push((0, w));
    }
    if let Some(kwh) = map.get("energy").and_then(parse::json_number) {
        obs.energy_total.push((0, kwh));
    }
    Ok(Z2mMessage::State {
        name: name.to_owned(),
        relays,
        obs,
    })
}

fn devices(topic: &str, payload: &[u8]) -> Result<Z2mMessage, MessageError> {
    let value = parse::json(topic, payload)?;
    let Value::Array(items) = value else {
        return Err(parse::invalid(topic, "not a JSON array"));
    };
    let mut out = Vec::new();
    for item in &items {
        let Some(name) = item.get("friendly_name").and_then(Value::as_str) else {
            continue;
        };
        if item.get("type").and_then(Value::as_str) == Some("Coordinator") {
            continue;
        }
        // Zigbee2MQTT refuses such names itself; one here could never be commanded (its
        // `<name>/set` topic would not be a valid topic name).
        if validate_topic_name(&format!("{BASE}/{name}/set")).is_err() {
            continue;
        }
        let definition = item.get("definition");
        let mut relays = Vec::new();
        if let Some(exposes) = definition
            .and_then(|d| d.get("exposes"))
            .and_then(Value::as_array)
        {
            for expose in exposes {
                collect_relays(expose, &mut relays);
            }
        }
        let description = definition.and_then(|d| {
            let vendor = d.get("vendor").and_then(Value::as_str);
            let model = d.get("model").and_then(Value::as_str);
            match (vendor, model) {
                (Some(v), Some(m)) => Some(format!("{v} {m}")),
                _ => d
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }
        });
        out.push(Z2mInfo {
            name: name.to_owned(),
            relays,
            description,
        });
    }
    Ok(Z2mMessage::Devices(out))
}

/// Adds the on/off state features of a `switch` / `light` expose.
fn collect_relays(expose: &Value, relays: &mut Vec<Z2mRelay>) {
    let kind = expose.get("type").and_then(Value::as_str);
    if !matches!(kind, Some("switch" | "light")) {
        return;
    }
    let Some(features) = expose.get("features").and_then(Value::as_array) else {
        return;
    };
    for f in features {
        let is_state = f.get("name").and_then(Value::as_str) == Some("state")
            && f.get("type").and_then(Value::as_str) == Some("binary");
        let Some(property) = f.get("property").and_then(Value::as_str) else {
            continue;
        };
        if !is_state || relays.iter().any(|r| r.property == property) {
            continue;
        }
        let text = |key: &str, default: &str| {
            f.get(key)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        relays.push(Z2mRelay {
            property: property.to_owned(),
            value_on: text("value_on", "ON"),
            value_off: text("value_off", "OFF"),
            endpoint: f
                .get("endpoint")
                .or_else(|| expose.get("endpoint"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
}

/// The command switching `relay` of device `name`.
pub(crate) fn command(name: &str, relay: &Z2mRelay, on: bool) -> OutgoingMessage {
    let value = if on {
        &relay.value_on
    } else {
        &relay.value_off
    };
    let mut body = serde_json::Map::new();
    body.insert(relay.property.clone(), Value::String(value.clone()));
    OutgoingMessage::command(
        format!("{BASE}/{name}/set"),
        Value::Object(body).to_string(),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_echo_topics_are_not_state() {
        assert!(parse("zigbee2mqtt/plug/set", br#"{"state":"ON"}"#).is_none());
        assert!(parse("zigbee2mqtt/a/b/set/state", b"ON").is_none());
        assert!(parse("zigbee2mqtt/plug/get", br#"{"state":""}"#).is_none());
        assert!(parse("zigbee2mqtt/bridge/state", br#"{"state":"online"}"#).is_none());
        assert!(parse("zigbee2mqtt/bridge/info", b"{}").is_none());
        assert!(parse("zigbee2mqttx/plug", b"{}").is_none());
    }

    #[test]
    fn names_with_slashes() {
        let m = parse("zigbee2mqtt/living/lamp/availability", b"online")
            .unwrap()
            .unwrap();
        assert_eq!(
            m,
            Z2mMessage::Availability {
                name: "living/lamp".into(),
                up: true
            }
        );
    }

    #[test]
    fn endpoints_win_over_plain_state() {
        let Z2mMessage::State { relays, .. } = parse(
            "zigbee2mqtt/double",
            br#"{"state":"ON","state_l1":"ON","state_l2":"OFF","linkquality":90}"#,
        )
        .unwrap()
        .unwrap() else {
            panic!("not state")
        };
        assert_eq!(
            relays,
            vec![
                ("state_l1".to_owned(), true),
                ("state_l2".to_owned(), false)
            ]
        );
    }

    #[test]
    fn command_json() {
        let m = command("kitchen/plug", &Z2mRelay::new("state"), true);
        assert_eq!(m.topic, "zigbee2mqtt/kitchen/plug/set");
        assert_eq!(m.payload_str(), r#"{"state":"ON"}"#);
        assert!(!m.retain);
        let m = command("double", &Z2mRelay::new("state_l2"), false);
        assert_eq!(m.payload_str(), r#"{"state_l2":"OFF"}"#);
    }
}
