//! Shelly Gen1 firmware (Shelly Plug S, model `SHPLG-S`), everything under `shellies/<id>/`.
//!
//! - last will `shellies/<id>/online` `false`, retained; `true` retained on connect;
//! - `shellies/announce` and `shellies/<id>/announce` JSON on connect and on the `announce`
//!   command;
//! - `shellies/<id>/relay/0/command` `on`/`off`/`toggle` answered with `shellies/<id>/relay/0`
//!   `on`/`off` (not retained: `mqtt_retain` is off by default), and a button press publishes the
//!   same;
//! - every update period: `relay/0`, `relay/0/power` (W), `relay/0/energy` (watt-minutes),
//!   `temperature`, `overtemperature`.

use std::time::Duration;

use serde_json::json;
use switchboard_mqtt::QoS;

use super::device::{SimDevice, SimMessage};

fn id(dev: &SimDevice) -> &str {
    &dev.plugs[0].spec.key
}

pub(super) fn availability(dev: &SimDevice, online: bool) -> SimMessage {
    SimMessage::new(format!("shellies/{}/online", id(dev)), online.to_string()).retained()
}

pub(super) fn subscriptions(dev: &SimDevice) -> Vec<(String, QoS)> {
    vec![
        (
            format!("shellies/{}/relay/0/command", id(dev)),
            QoS::AtMostOnce,
        ),
        (format!("shellies/{}/command", id(dev)), QoS::AtMostOnce),
        ("shellies/command".to_owned(), QoS::AtMostOnce),
    ]
}

fn announce(dev: &SimDevice) -> Vec<SimMessage> {
    let mac = &dev.plugs[0].mac;
    let last = u8::from_str_radix(&mac[10..], 16).unwrap_or(1);
    let body = json!({
        "id": id(dev),
        "model": "SHPLG-S",
        "mac": mac,
        // A documentation address (RFC 5737): the simulator is not on any LAN.
        "ip": format!("192.0.2.{}", last.max(1)),
        "new_fw": false,
        "fw_ver": "20230913-113610/v1.14.0-gcb84623",
    })
    .to_string();
    vec![
        SimMessage::new("shellies/announce", body.clone()),
        SimMessage::new(format!("shellies/{}/announce", id(dev)), body),
    ]
}

pub(super) fn birth(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    let mut out = vec![availability(dev, true)];
    out.extend(announce(dev));
    out.extend(telemetry(dev, now));
    out
}

/// `shellies/<id>/relay/0` `on`/`off`.
pub(super) fn relay_state(dev: &SimDevice, _relay: usize) -> SimMessage {
    let word = if dev.plugs[0].on { "on" } else { "off" };
    SimMessage::new(format!("shellies/{}/relay/0", id(dev)), word)
}

pub(super) fn command(
    dev: &mut SimDevice,
    topic: &str,
    payload: &str,
    now: Duration,
) -> Vec<SimMessage> {
    let prefix = format!("shellies/{}/", id(dev));
    if topic == "shellies/command" || topic.strip_prefix(&prefix) == Some("command") {
        return match payload.trim() {
            "announce" => announce(dev),
            "update" => telemetry(dev, now),
            _ => Vec::new(),
        };
    }
    if topic.strip_prefix(&prefix) != Some("relay/0/command") {
        return Vec::new();
    }
    let on = dev.plugs[0].on;
    let want = match payload.trim() {
        "on" => true,
        "off" => false,
        "toggle" => !on,
        _ => return Vec::new(),
    };
    if want != on {
        dev.switch(0, want, "MQTT", now);
    }
    vec![relay_state(dev, 0)]
}

pub(super) fn telemetry(dev: &mut SimDevice, _now: Duration) -> Vec<SimMessage> {
    let temperature = 28.0 + dev.rng.f64() * 8.0;
    let id = id(dev).to_owned();
    let p = &dev.plugs[0];
    vec![
        relay_state(dev, 0),
        SimMessage::new(
            format!("shellies/{id}/relay/0/power"),
            format!("{:.2}", p.power),
        ),
        SimMessage::new(
            format!("shellies/{id}/relay/0/energy"),
            format!("{}", (p.total_wh * 60.0).round() as u64),
        ),
        SimMessage::new(
            format!("shellies/{id}/temperature"),
            format!("{temperature:.2}"),
        ),
        SimMessage::new(format!("shellies/{id}/overtemperature"), "0"),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::appliance::Appliance;
    use super::super::device::{Behaviour, Firmware, Outgoing, PlugSpec};
    use super::*;

    fn plug() -> SimDevice {
        SimDevice::new(
            Firmware::ShellyGen1,
            "shellyplug-s-7AD8E1",
            vec![PlugSpec {
                key: "shellyplug-s-7AD8E1".into(),
                name: "TV".into(),
                room: "Living room".into(),
                appliance: Appliance::Tv,
            }],
            Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            2,
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
    fn availability_is_a_retained_boolean() {
        let mut d = plug();
        let will = d.will();
        assert_eq!(will.topic, "shellies/shellyplug-s-7AD8E1/online");
        assert_eq!((will.payload.as_str(), will.retain), ("false", true));
        let birth = published(d.on_connect(Duration::ZERO));
        assert_eq!(
            birth[0],
            SimMessage::new("shellies/shellyplug-s-7AD8E1/online", "true").retained()
        );
        let announce = birth
            .iter()
            .find(|m| m.topic == "shellies/announce")
            .unwrap();
        assert!(announce.payload.contains(r#""model":"SHPLG-S""#));
    }

    #[test]
    fn relay_commands() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        assert!(d.plugs()[0].on, "a TV starts on");
        let now = Duration::from_secs(3);
        let out = published(d.handle_command(
            "shellies/shellyplug-s-7AD8E1/relay/0/command",
            b"off",
            now,
        ));
        assert_eq!(
            out,
            vec![SimMessage::new(
                "shellies/shellyplug-s-7AD8E1/relay/0",
                "off"
            )]
        );
        let out = published(d.handle_command(
            "shellies/shellyplug-s-7AD8E1/relay/0/command",
            b"toggle",
            now,
        ));
        assert_eq!(out[0].payload, "on");
        assert!(
            d.handle_command("shellies/shellyplug-s-7AD8E1/relay/0/command", b"ON!", now)
                .is_empty()
        );
    }

    #[test]
    fn telemetry_topics() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        let out = published(d.tick(Duration::from_secs(10)));
        let topics: Vec<&str> = out.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            vec![
                "shellies/shellyplug-s-7AD8E1/relay/0",
                "shellies/shellyplug-s-7AD8E1/relay/0/power",
                "shellies/shellyplug-s-7AD8E1/relay/0/energy",
                "shellies/shellyplug-s-7AD8E1/temperature",
                "shellies/shellyplug-s-7AD8E1/overtemperature",
            ]
        );
        let watts: f64 = out[1].payload.parse().unwrap();
        assert!((50.0..120.0).contains(&watts), "{watts}");
        let _: u64 = out[2].payload.parse().unwrap();
        assert!(out.iter().all(|m| !m.retain && m.qos == QoS::AtMostOnce));
    }
}
