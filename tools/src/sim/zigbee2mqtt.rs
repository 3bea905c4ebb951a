//! A Zigbee2MQTT bridge with Zigbee smart plugs (Tuya `TS011F_plug_1`, with metering) behind it.
//!
//! One MQTT connection for all its plugs, as the real bridge:
//! - last will `zigbee2mqtt/bridge/state` `{"state":"offline"}`, retained; `{"state":"online"}`
//!   retained on connect;
//! - `zigbee2mqtt/bridge/devices`: the retained device list (coordinator first, then each plug
//!   with its `switch` expose and `power`/`energy` numerics);
//! - `zigbee2mqtt/<name>/availability` `{"state":"online"}` retained per plug (`offline` when a
//!   plug drops off the mesh: the fault this family simulates instead of a broken connection);
//! - `zigbee2mqtt/<name>/set` `{"state":"ON"|"OFF"|"TOGGLE"}` (also `/set/state` with a bare
//!   value) and `/get`, answered on `zigbee2mqtt/<name>` with the device's whole state JSON
//!   (`state`, `power`, `energy`, `voltage`, `current`, `linkquality`), not retained (the
//!   per-device `retain` option is off by default); the same JSON is reported periodically.
//!
//! `<name>` may contain `/`, so topics are matched against the known names, not split.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_mqtt::QoS;

use super::device::{SimDevice, SimMessage, round};

const BASE: &str = "zigbee2mqtt";

pub(super) fn bridge_state(online: bool) -> SimMessage {
    let state = if online { "online" } else { "offline" };
    SimMessage::new(
        format!("{BASE}/bridge/state"),
        json!({"state": state}).to_string(),
    )
    .retained()
}

pub(super) fn subscriptions() -> Vec<(String, QoS)> {
    vec![(format!("{BASE}/#"), QoS::AtMostOnce)]
}

pub(super) fn availability(dev: &SimDevice, i: usize, online: bool) -> SimMessage {
    let state = if online { "online" } else { "offline" };
    SimMessage::new(
        format!("{BASE}/{}/availability", dev.plugs[i].spec.key),
        json!({"state": state}).to_string(),
    )
    .retained()
}

fn devices(dev: &SimDevice) -> SimMessage {
    let mut list = vec![json!({
        "ieee_address": format!("0x00124b00{}", &dev.client_id[dev.client_id.len().saturating_sub(8)..]),
        "type": "Coordinator",
        "network_address": 0,
        "supported": true,
        "friendly_name": "Coordinator",
        "disabled": false,
        "definition": null,
        "interview_completed": true,
    })];
    for (n, p) in dev.plugs.iter().enumerate() {
        list.push(json!({
            "ieee_address": format!("0x{}", p.mac.to_ascii_lowercase()),
            "type": "Router",
            "network_address": 0x1000 + n,
            "supported": true,
            "friendly_name": p.spec.key,
            "description": p.spec.name,
            "disabled": false,
            "power_source": "Mains (single phase)",
            "model_id": "TS011F",
            "manufacturer": "_TZ3000_okaz9tjs",
            "interview_completed": true,
            "interviewing": false,
            "definition": {
                "model": "TS011F_plug_1",
                "vendor": "Tuya",
                "description": "Smart plug (with power monitoring)",
                "supports_ota": true,
                "exposes": [
                    {"type": "switch", "features": [{
                        "type": "binary", "name": "state", "label": "State", "property": "state",
                        "access": 7, "value_on": "ON", "value_off": "OFF", "value_toggle": "TOGGLE",
                        "description": "On/off state of the switch",
                    }]},
                    {"type": "numeric", "name": "power", "property": "power", "access": 5, "unit": "W"},
                    {"type": "numeric", "name": "current", "property": "current", "access": 5, "unit": "A"},
                    {"type": "numeric", "name": "voltage", "property": "voltage", "access": 5, "unit": "V"},
                    {"type": "numeric", "name": "energy", "property": "energy", "access": 5, "unit": "kWh"},
                    {"type": "numeric", "name": "linkquality", "property": "linkquality", "access": 1, "unit": "lqi"},
                ],
            },
        }));
    }
    SimMessage::new(
        format!("{BASE}/bridge/devices"),
        Value::Array(list).to_string(),
    )
    .retained()
}

/// `zigbee2mqtt/<name>` with the plug's whole state.
pub(super) fn state(dev: &mut SimDevice, i: usize) -> SimMessage {
    let voltage = dev.voltage().round();
    let wobble = dev.rng.i16(-6..7);
    let p = &mut dev.plugs[i];
    p.linkquality = (i16::from(p.linkquality) + wobble).clamp(30, 255) as u8;
    let current = if p.power > 0.0 {
        p.power / voltage
    } else {
        0.0
    };
    let body = json!({
        "state": if p.on { "ON" } else { "OFF" },
        "power": p.power.round() as i64,
        "energy": round(p.total_wh / 1000.0, 2),
        "voltage": voltage as i64,
        "current": round(current, 2),
        "linkquality": p.linkquality,
    });
    SimMessage::new(format!("{BASE}/{}", p.spec.key), body.to_string())
}

pub(super) fn birth(dev: &mut SimDevice, _now: Duration) -> Vec<SimMessage> {
    let mut out = vec![bridge_state(true), devices(dev)];
    for i in 0..dev.plugs.len() {
        let online = dev.plugs[i].offline_until.is_none();
        out.push(availability(dev, i, online));
        if online {
            out.push(state(dev, i));
        }
    }
    out
}

/// What a topic under the base asks of which plug.
enum Request {
    Set(Value),
    SetState(String),
    Get,
}

fn parse(dev: &SimDevice, topic: &str, payload: &str) -> Option<(usize, Request)> {
    let rest = topic.strip_prefix(BASE)?.strip_prefix('/')?;
    if let Some(name) = rest.strip_suffix("/set/state") {
        let i = dev.plug_by_key(name)?;
        return Some((i, Request::SetState(payload.trim().to_owned())));
    }
    if let Some(name) = rest.strip_suffix("/set") {
        let i = dev.plug_by_key(name)?;
        let value =
            serde_json::from_str(payload).unwrap_or_else(|_| json!({"state": payload.trim()}));
        return Some((i, Request::Set(value)));
    }
    let name = rest.strip_suffix("/get")?;
    Some((dev.plug_by_key(name)?, Request::Get))
}

pub(super) fn command(
    dev: &mut SimDevice,
    topic: &str,
    payload: &str,
    now: Duration,
) -> Vec<SimMessage> {
    let Some((i, request)) = parse(dev, topic, payload) else {
        return Vec::new();
    };
    if dev.plugs[i].offline_until.is_some() {
        // The plug is off the mesh: the bridge's command fails and nothing is published.
        return Vec::new();
    }
    let wanted = match request {
        Request::Get => None,
        Request::Set(v) => v.get("state").and_then(Value::as_str).map(str::to_owned),
        Request::SetState(s) => Some(s),
    };
    if let Some(word) = wanted {
        let on = dev.plugs[i].on;
        let want = match word.to_ascii_uppercase().as_str() {
            "ON" => true,
            "OFF" => false,
            "TOGGLE" => !on,
            _ => return Vec::new(),
        };
        if want != on {
            dev.switch(i, want, "MQTT", now);
        }
    }
    vec![state(dev, i)]
}

pub(super) fn telemetry(dev: &mut SimDevice, _now: Duration) -> Vec<SimMessage> {
    (0..dev.plugs.len())
        .filter(|&i| dev.plugs[i].offline_until.is_none())
        .collect::<Vec<_>>()
        .into_iter()
        .map(|i| state(dev, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::appliance::Appliance;
    use super::super::device::{Behaviour, Firmware, Outgoing, PlugSpec};
    use super::*;

    fn bridge() -> SimDevice {
        let plug = |key: &str, name: &str, appliance| PlugSpec {
            key: key.into(),
            name: name.into(),
            room: "Living room".into(),
            appliance,
        };
        SimDevice::new(
            Firmware::Zigbee2Mqtt,
            "zigbee2mqtt_3f2a1b0c",
            vec![
                plug(
                    "living/floor_lamp",
                    "Floor lamp",
                    Appliance::Lamp { watts: 9 },
                ),
                plug("coffee", "Coffee machine", Appliance::CoffeeMachine),
            ],
            Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            4,
        )
    }

    fn published(out: Vec<Outgoing>) -> Vec<SimMessage> {
        out.into_iter()
            .filter_map(|o| match o {
                Outgoing::Publish(m) => Some(m),
                Outgoing::GoOffline { .. } => None,
            })
            .collect()
    }

    #[test]
    fn bridge_birth() {
        let mut d = bridge();
        assert_eq!(
            d.will(),
            SimMessage::new("zigbee2mqtt/bridge/state", r#"{"state":"offline"}"#).retained()
        );
        let birth = published(d.on_connect(Duration::ZERO));
        assert_eq!(birth[0].payload, r#"{"state":"online"}"#);
        let devices = &birth[1];
        assert_eq!(
            (devices.topic.as_str(), devices.retain),
            ("zigbee2mqtt/bridge/devices", true)
        );
        let list: Value = serde_json::from_str(&devices.payload).unwrap();
        assert_eq!(list[1]["friendly_name"], "living/floor_lamp");
        assert_eq!(
            list[1]["definition"]["exposes"][0]["features"][0]["property"],
            "state"
        );
        assert!(
            birth.contains(
                &SimMessage::new(
                    "zigbee2mqtt/living/floor_lamp/availability",
                    r#"{"state":"online"}"#
                )
                .retained()
            )
        );
    }

    #[test]
    fn set_confirms_with_state_json() {
        let mut d = bridge();
        d.on_connect(Duration::ZERO);
        let now = Duration::from_secs(1);
        let out = published(d.handle_command(
            "zigbee2mqtt/living/floor_lamp/set",
            br#"{"state":"ON"}"#,
            now,
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "zigbee2mqtt/living/floor_lamp");
        assert!(!out[0].retain);
        let v: Value = serde_json::from_str(&out[0].payload).unwrap();
        assert_eq!(v["state"], "ON");
        assert_eq!(v["power"], 9.0);
        assert!(v["energy"].as_f64().is_some() && v["linkquality"].as_u64().is_some());
        let out = published(d.handle_command("zigbee2mqtt/coffee/set/state", b"TOGGLE", now));
        assert!(out[0].payload.contains(r#""state":"ON""#));
        let out =
            published(d.handle_command("zigbee2mqtt/coffee/set", br#"{"state":"toggle"}"#, now));
        assert!(out[0].payload.contains(r#""state":"OFF""#));
        // Our own state messages and unknown names are ignored.
        assert!(
            d.handle_command("zigbee2mqtt/coffee", br#"{"state":"ON"}"#, now)
                .is_empty()
        );
        assert!(
            d.handle_command("zigbee2mqtt/nobody/set", br#"{"state":"ON"}"#, now)
                .is_empty()
        );
    }
}
