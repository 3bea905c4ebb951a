//! Tasmota firmware (a Sonoff S31-style plug with an energy monitor), default FullTopic
//! `%prefix%/%topic%/`.
//!
//! - last will `tele/<t>/LWT` `Offline`, retained; `Online` retained on connect;
//! - `tele/<t>/INFO1` on connect, `tele/<t>/STATE` and `tele/<t>/SENSOR` (`ENERGY`) on connect
//!   and every TelePeriod;
//! - `cmnd/<t>/POWER` (also `POWER1`, and the group topic `cmnd/tasmotas/...`) with
//!   `ON`/`OFF`/`TOGGLE`/`1`/`0`/`2` in any case, or an empty payload to query: answered with
//!   `stat/<t>/RESULT` `{"POWER":"ON"}` then `stat/<t>/POWER` `ON`, neither retained (PowerRetain
//!   is off by default); a physical button press publishes the same two;
//! - `cmnd/<t>/TelePeriod <secs>` changes the telemetry period, `cmnd/<t>/STATUS 10` answers
//!   `stat/<t>/STATUS10`; any other command answers `{"Command":"Unknown"}`.

use std::time::Duration;

use serde_json::json;
use switchboard_devices::civil::iso_seconds as iso_time;
use switchboard_mqtt::QoS;

use super::device::{SimDevice, SimMessage, round};

/// The group topic every Tasmota listens to by default.
const GROUP: &str = "tasmotas";

fn topic(dev: &SimDevice) -> &str {
    &dev.plugs[0].spec.key
}

pub(super) fn availability(dev: &SimDevice, online: bool) -> SimMessage {
    let payload = if online { "Online" } else { "Offline" };
    SimMessage::new(format!("tele/{}/LWT", topic(dev)), payload).retained()
}

pub(super) fn subscriptions(dev: &SimDevice) -> Vec<(String, QoS)> {
    vec![
        (format!("cmnd/{}/#", topic(dev)), QoS::AtMostOnce),
        (format!("cmnd/{GROUP}/#"), QoS::AtMostOnce),
    ]
}

pub(super) fn birth(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    let t = topic(dev).to_owned();
    let info = json!({"Info1": {
        "Module": "Sonoff S31",
        "Version": "14.4.1(release-tasmota)",
        "FallbackTopic": format!("cmnd/DVES_{}_fb/", &dev.plugs[0].mac[6..]),
        "GroupTopic": format!("cmnd/{GROUP}/"),
    }});
    let mut out = vec![
        availability(dev, true),
        SimMessage::new(format!("tele/{t}/INFO1"), info.to_string()),
    ];
    out.extend(telemetry(dev, now));
    out
}

fn power_word(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// `stat/<t>/RESULT` then `stat/<t>/POWER`: a command's answer and a button press alike.
pub(super) fn power_report(dev: &SimDevice, _relay: usize) -> Vec<SimMessage> {
    let t = topic(dev);
    let word = power_word(dev.plugs[0].on);
    vec![
        SimMessage::new(
            format!("stat/{t}/RESULT"),
            json!({"POWER": word}).to_string(),
        ),
        SimMessage::new(format!("stat/{t}/POWER"), word),
    ]
}

pub(super) fn command(
    dev: &mut SimDevice,
    topic_in: &str,
    payload: &str,
    now: Duration,
) -> Vec<SimMessage> {
    let mut levels = topic_in.split('/');
    let (Some("cmnd"), Some(t), Some(cmd), None) =
        (levels.next(), levels.next(), levels.next(), levels.next())
    else {
        return Vec::new();
    };
    if t != topic(dev) && t != GROUP {
        return Vec::new();
    }
    let cmd = cmd.to_ascii_uppercase();
    let arg = payload.trim();
    let result_topic = format!("stat/{}/RESULT", topic(dev));
    let result =
        |value: serde_json::Value| SimMessage::new(result_topic.clone(), value.to_string());
    match cmd.as_str() {
        "POWER" | "POWER1" | "POWER0" => {
            let on = dev.plugs[0].on;
            let want = match arg.to_ascii_uppercase().as_str() {
                "" => on,
                "ON" | "1" | "TRUE" => true,
                "OFF" | "0" | "FALSE" => false,
                "TOGGLE" | "2" => !on,
                _ => return vec![result(json!({"Command": "Error"}))],
            };
            if want != on {
                dev.switch(0, want, "MQTT", now);
            }
            power_report(dev, 0)
        }
        "TELEPERIOD" => {
            if let Ok(secs) = arg.parse::<u64>() {
                // Tasmota clamps to 10..=3600 (0 disables; kept at the minimum here).
                let secs = secs.clamp(10, 3600);
                dev.telemetry_period = Duration::from_secs(secs);
            }
            vec![result(
                json!({"TelePeriod": dev.telemetry_period.as_secs()}),
            )]
        }
        "STATUS" if arg == "10" || arg == "8" => {
            let sns = json!({"StatusSNS": sensor_json(dev, now)});
            vec![SimMessage::new(
                format!("stat/{}/STATUS{arg}", topic(dev)),
                sns.to_string(),
            )]
        }
        _ => vec![result(json!({"Command": "Unknown"}))],
    }
}

fn sensor_json(dev: &mut SimDevice, now: Duration) -> serde_json::Value {
    let voltage = dev.voltage().round();
    let p = &dev.plugs[0];
    // Tasmota prints watts and volts as integers.
    let power = p.power.round() as i64;
    let current = if p.power > 0.0 {
        p.power / voltage
    } else {
        0.0
    };
    let apparent = (p.power * 1.05).round() as i64;
    let reactive = (p.power * 0.3).round() as i64;
    let factor = if p.power > 0.0 { 0.95 } else { 0.0 };
    let voltage = voltage as i64;
    json!({
        "Time": iso_time(dev.unix(now)),
        "ENERGY": {
            "TotalStartTime": "2024-03-09T17:41:02",
            "Total": round(p.total_wh / 1000.0, 3),
            "Yesterday": 0.412,
            "Today": round(p.today_wh / 1000.0, 3),
            "Period": (p.total_wh - p.period_start_wh).round() as i64,
            "Power": power,
            "ApparentPower": apparent,
            "ReactivePower": reactive,
            "Factor": factor,
            "Voltage": voltage,
            "Current": round(current, 3),
        }
    })
}

pub(super) fn telemetry(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    let t = topic(dev).to_owned();
    let uptime = now.saturating_sub(dev.connected_at).as_secs();
    let rssi = dev.rng.u8(60..90);
    let state = json!({
        "Time": iso_time(dev.unix(now)),
        "Uptime": format!("{}T{:02}:{:02}:{:02}", uptime / 86_400, uptime / 3600 % 24, uptime / 60 % 60, uptime % 60),
        "UptimeSec": uptime,
        "Heap": 25,
        "SleepMode": "Dynamic",
        "Sleep": 50,
        "LoadAvg": 19,
        "MqttCount": 1,
        "POWER": power_word(dev.plugs[0].on),
        "Wifi": {"AP": 1, "SSId": "home", "Channel": 6, "Mode": "11n", "RSSI": rssi, "Signal": i32::from(rssi) / 2 - 100, "LinkCount": 1},
    });
    let sensor = sensor_json(dev, now);
    vec![
        SimMessage::new(format!("tele/{t}/STATE"), state.to_string()),
        SimMessage::new(format!("tele/{t}/SENSOR"), sensor.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::appliance::Appliance;
    use super::super::device::{Behaviour, Firmware, Outgoing, PlugSpec};
    use super::*;

    fn plug() -> SimDevice {
        SimDevice::new(
            Firmware::Tasmota,
            "tasmota_1A2B3C",
            vec![PlugSpec {
                key: "tasmota_1A2B3C".into(),
                name: "Kettle".into(),
                room: "Kitchen".into(),
                appliance: Appliance::Kettle,
            }],
            Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            1,
        )
    }

    fn published(out: Vec<Outgoing>) -> Vec<SimMessage> {
        out.into_iter()
            .map(|o| match o {
                Outgoing::Publish(m) => m,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn will_and_birth() {
        let mut d = plug();
        let will = d.will();
        assert_eq!(
            (
                will.topic.as_str(),
                will.payload.as_str(),
                will.retain,
                will.qos
            ),
            ("tele/tasmota_1A2B3C/LWT", "Offline", true, QoS::AtLeastOnce)
        );
        let birth = published(d.on_connect(Duration::ZERO));
        assert_eq!(birth[0].topic, "tele/tasmota_1A2B3C/LWT");
        assert_eq!(birth[0].payload, "Online");
        assert!(birth[0].retain);
        assert!(
            birth
                .iter()
                .any(|m| m.topic == "tele/tasmota_1A2B3C/SENSOR")
        );
        assert!(birth[1..].iter().all(|m| !m.retain));
        assert_eq!(
            d.subscriptions()[0],
            ("cmnd/tasmota_1A2B3C/#".to_owned(), QoS::AtMostOnce)
        );
    }

    #[test]
    fn power_commands_confirm_on_result_and_power() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        let now = Duration::from_secs(1);
        let out = published(d.handle_command("cmnd/tasmota_1A2B3C/POWER", b"ON", now));
        assert_eq!(
            out,
            vec![
                SimMessage::new("stat/tasmota_1A2B3C/RESULT", r#"{"POWER":"ON"}"#),
                SimMessage::new("stat/tasmota_1A2B3C/POWER", "ON"),
            ]
        );
        let out = published(d.handle_command("cmnd/tasmota_1A2B3C/power", b"toggle", now));
        assert_eq!(out[1].payload, "OFF");
        // An empty payload queries without switching.
        let out = published(d.handle_command("cmnd/tasmota_1A2B3C/POWER", b"", now));
        assert_eq!(out[0].payload, r#"{"POWER":"OFF"}"#);
        assert!(!d.plugs()[0].on);
        // The group topic reaches every Tasmota.
        let out = published(d.handle_command("cmnd/tasmotas/POWER1", b"1", now));
        assert_eq!(out[1], SimMessage::new("stat/tasmota_1A2B3C/POWER", "ON"));
        // Other devices' commands are not ours.
        assert!(d.handle_command("cmnd/other/POWER", b"ON", now).is_empty());
        let out = published(d.handle_command("cmnd/tasmota_1A2B3C/Frobnicate", b"", now));
        assert_eq!(out[0].payload, r#"{"Command":"Unknown"}"#);
    }

    #[test]
    fn sensor_telemetry_reports_power_and_energy() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        d.handle_command("cmnd/tasmota_1A2B3C/POWER", b"ON", Duration::from_secs(1));
        let out = published(d.tick(Duration::from_secs(10)));
        let sensor = out
            .iter()
            .find(|m| m.topic == "tele/tasmota_1A2B3C/SENSOR")
            .expect("SENSOR");
        let v: serde_json::Value = serde_json::from_str(&sensor.payload).unwrap();
        let power = v["ENERGY"]["Power"].as_i64().unwrap();
        assert!((1900..2100).contains(&power), "{power}");
        assert!(v["ENERGY"]["Total"].as_f64().unwrap() > 0.0);
        assert_eq!(v["Time"], "2026-01-01T00:00:10");
        let state = out
            .iter()
            .find(|m| m.topic == "tele/tasmota_1A2B3C/STATE")
            .unwrap();
        assert!(state.payload.contains(r#""POWER":"ON""#));
        let out = published(d.handle_command(
            "cmnd/tasmota_1A2B3C/TelePeriod",
            b"60",
            Duration::from_secs(11),
        ));
        assert_eq!(out[0].payload, r#"{"TelePeriod":60}"#);
        assert_eq!(
            d.next_wakeup(),
            Duration::from_secs(20),
            "applies from the next period"
        );
    }
}
