//! An ESPHome plug (Athom Smart Plug V2) announcing itself through Home Assistant MQTT
//! discovery, with ESPHome's default topics under its node name `<node>`:
//!
//! - last will `<node>/status` `offline`, retained; `online` retained on connect;
//! - discovery configs, retained: `homeassistant/switch/<node>/relay/config` and the sensors
//!   `homeassistant/sensor/<node>/power/config` (W), `.../energy/config` (kWh, total) and
//!   `.../energy_today/config` (kWh), all sharing `device.identifiers` and the availability
//!   topic; sent again when Home Assistant's birth message `homeassistant/status` `online`
//!   arrives;
//! - `<node>/switch/relay/command` `ON`/`OFF`/`TOGGLE` answered on `<node>/switch/relay/state`
//!   `ON`/`OFF`, retained (ESPHome retains states by default); button presses publish the same;
//! - sensor states (retained) every telemetry period.

use std::time::Duration;

use serde_json::json;
use switchboard_mqtt::QoS;

use super::device::{SimDevice, SimMessage, round};

/// The discovery prefix.
const PREFIX: &str = "homeassistant";

fn node(dev: &SimDevice) -> &str {
    &dev.plugs[0].spec.key
}

/// A retained QoS 0 state, as ESPHome publishes them.
fn retained_state(topic: String, payload: String) -> SimMessage {
    SimMessage {
        topic,
        payload,
        qos: QoS::AtMostOnce,
        retain: true,
    }
}

pub(super) fn availability(dev: &SimDevice, online: bool) -> SimMessage {
    let payload = if online { "online" } else { "offline" };
    SimMessage::new(format!("{}/status", node(dev)), payload).retained()
}

pub(super) fn subscriptions(dev: &SimDevice) -> Vec<(String, QoS)> {
    vec![
        (
            format!("{}/switch/relay/command", node(dev)),
            QoS::AtMostOnce,
        ),
        (format!("{PREFIX}/status"), QoS::AtMostOnce),
    ]
}

fn discovery(dev: &SimDevice) -> Vec<SimMessage> {
    let n = node(dev);
    let p = &dev.plugs[0];
    let mac = p.mac.to_ascii_lowercase();
    let colon_mac = mac
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let device = json!({
        "ids": [mac],
        "cns": [["mac", colon_mac]],
        "name": p.spec.name,
        "sa": p.spec.room,
        "mf": "Athom",
        "mdl": "Smart Plug V2",
        "sw": "2024.12.4",
    });
    let avty = format!("{n}/status");
    let switch = json!({
        "name": "Relay",
        "uniq_id": format!("{mac}-switch-relay"),
        "stat_t": format!("{n}/switch/relay/state"),
        "cmd_t": format!("{n}/switch/relay/command"),
        "avty_t": avty,
        "dev": device,
    });
    let sensor = |obj: &str, name: &str, class: &str, unit: &str, state_class: &str| {
        json!({
            "name": name,
            "uniq_id": format!("{mac}-sensor-{obj}"),
            "stat_t": format!("{n}/sensor/{obj}/state"),
            "avty_t": avty,
            "dev_cla": class,
            "unit_of_meas": unit,
            "stat_cla": state_class,
            "dev": device,
        })
    };
    let config = |component: &str, obj: &str, body: serde_json::Value| {
        SimMessage::new(
            format!("{PREFIX}/{component}/{n}/{obj}/config"),
            body.to_string(),
        )
        .retained()
    };
    vec![
        config("switch", "relay", switch),
        config(
            "sensor",
            "power",
            sensor("power", "Power", "power", "W", "measurement"),
        ),
        config(
            "sensor",
            "energy",
            sensor("energy", "Energy", "energy", "kWh", "total_increasing"),
        ),
        config(
            "sensor",
            "energy_today",
            sensor(
                "energy_today",
                "Energy today",
                "energy",
                "kWh",
                "total_increasing",
            ),
        ),
    ]
}

pub(super) fn birth(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    let mut out = vec![availability(dev, true)];
    out.extend(discovery(dev));
    out.extend(state_report(dev));
    out.extend(telemetry(dev, now));
    out
}

/// `<node>/switch/relay/state`, retained.
pub(super) fn state_report(dev: &SimDevice) -> Vec<SimMessage> {
    let word = if dev.plugs[0].on { "ON" } else { "OFF" };
    vec![retained_state(
        format!("{}/switch/relay/state", node(dev)),
        word.to_owned(),
    )]
}

pub(super) fn command(
    dev: &mut SimDevice,
    topic: &str,
    payload: &str,
    now: Duration,
) -> Vec<SimMessage> {
    if topic == format!("{PREFIX}/status") {
        return if payload.trim() == "online" {
            discovery(dev)
        } else {
            Vec::new()
        };
    }
    if topic != format!("{}/switch/relay/command", node(dev)) {
        return Vec::new();
    }
    let on = dev.plugs[0].on;
    let want = match payload.trim().to_ascii_uppercase().as_str() {
        "ON" => true,
        "OFF" => false,
        "TOGGLE" => !on,
        _ => return Vec::new(),
    };
    if want != on {
        dev.switch(0, want, "MQTT", now);
    }
    state_report(dev)
}

pub(super) fn telemetry(dev: &mut SimDevice, _now: Duration) -> Vec<SimMessage> {
    let n = node(dev).to_owned();
    let p = &dev.plugs[0];
    vec![
        retained_state(format!("{n}/sensor/power/state"), format!("{:.1}", p.power)),
        retained_state(
            format!("{n}/sensor/energy/state"),
            format!("{}", round(p.total_wh / 1000.0, 3)),
        ),
        retained_state(
            format!("{n}/sensor/energy_today/state"),
            format!("{}", round(p.today_wh / 1000.0, 3)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::appliance::Appliance;
    use super::super::device::{Behaviour, Firmware, Outgoing, PlugSpec};
    use super::*;

    const N: &str = "athom-plug-v2-5e6f70";

    fn plug() -> SimDevice {
        SimDevice::new(
            Firmware::HomeAssistant,
            N,
            vec![PlugSpec {
                key: N.into(),
                name: "Desk lamp".into(),
                room: "Office".into(),
                appliance: Appliance::Lamp { watts: 6 },
            }],
            Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            5,
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
    fn discovery_is_retained_and_shares_the_device() {
        let mut d = plug();
        assert_eq!(
            d.will(),
            SimMessage::new(format!("{N}/status"), "offline").retained()
        );
        let birth = published(d.on_connect(Duration::ZERO));
        let switch = birth
            .iter()
            .find(|m| m.topic == format!("homeassistant/switch/{N}/relay/config"))
            .unwrap();
        assert!(switch.retain);
        let s: serde_json::Value = serde_json::from_str(&switch.payload).unwrap();
        assert_eq!(s["cmd_t"], format!("{N}/switch/relay/command"));
        assert_eq!(s["dev"]["sa"], "Office");
        let power = birth
            .iter()
            .find(|m| m.topic == format!("homeassistant/sensor/{N}/power/config"))
            .unwrap();
        let p: serde_json::Value = serde_json::from_str(&power.payload).unwrap();
        assert_eq!(p["dev_cla"], "power");
        assert_eq!(p["dev"]["ids"], s["dev"]["ids"]);
        assert!(birth.contains(&retained_state(
            format!("{N}/switch/relay/state"),
            "OFF".into()
        )));
    }

    #[test]
    fn commands_confirm_on_the_retained_state_topic() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        let out = published(d.handle_command(
            &format!("{N}/switch/relay/command"),
            b"ON",
            Duration::from_secs(1),
        ));
        assert_eq!(
            out,
            vec![retained_state(
                format!("{N}/switch/relay/state"),
                "ON".into()
            )]
        );
        let again =
            published(d.handle_command("homeassistant/status", b"online", Duration::from_secs(2)));
        assert_eq!(
            again.len(),
            4,
            "discovery again after Home Assistant restarts"
        );
    }
}
