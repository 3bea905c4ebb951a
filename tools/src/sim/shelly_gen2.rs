//! Shelly Gen2+ firmware (Shelly Plus Plug S, `SNPL-00112EU`): JSON-RPC over MQTT.
//!
//! Configured as a dashboard needs it: RPC over MQTT and RPC notifications on (their defaults),
//! and "generic status update over MQTT" (`status_ntf`) switched on. Shelly documents QoS 1 as
//! the level its MQTT client supports, so everything goes out at QoS 1.
//!
//! - last will `<prefix>/online` `false`, retained; `true` retained on connect;
//! - requests on `<prefix>/rpc`: `Switch.Set` `{"id":0,"on":true}`, `Switch.Toggle`,
//!   `Switch.GetStatus`, `Shelly.GetStatus`, `Shelly.GetDeviceInfo`; the reply goes to
//!   `<src>/rpc` as `{"id":..,"src":"<prefix>","dst":"<src>","result":{"was_on":..}}` (or
//!   `"error":{"code":..,"message":..}`);
//! - every change and every telemetry period: `<prefix>/status/switch:0` with the whole status
//!   (`output`, `apower`, `voltage`, `current`, `aenergy.total` in Wh, `temperature`), and a
//!   `NotifyStatus` on `<prefix>/events/rpc` with what changed (`source` `MQTT` or `button`).
//!
//! Whether `status/...` messages are retained is not documented; they are sent unretained.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_mqtt::QoS;

use super::device::{SimDevice, SimMessage, round};

fn prefix(dev: &SimDevice) -> &str {
    &dev.plugs[0].spec.key
}

fn msg(topic: String, payload: String) -> SimMessage {
    SimMessage {
        topic,
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
    }
}

pub(super) fn availability(dev: &SimDevice, online: bool) -> SimMessage {
    SimMessage::new(format!("{}/online", prefix(dev)), online.to_string()).retained()
}

pub(super) fn subscriptions(dev: &SimDevice) -> Vec<(String, QoS)> {
    vec![
        (format!("{}/rpc", prefix(dev)), QoS::AtLeastOnce),
        (format!("{}/command", prefix(dev)), QoS::AtLeastOnce),
    ]
}

pub(super) fn birth(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    let mut out = vec![availability(dev, true)];
    out.extend(telemetry(dev, now));
    out
}

/// The `switch:0` status object, `id` first as the firmware writes it.
fn status_json(dev: &mut SimDevice, now: Duration) -> String {
    let voltage = round(dev.voltage(), 1);
    let unix = dev.unix(now);
    let temp_c = round(36.0 + dev.rng.f64() * 6.0, 1);
    let p = &dev.plugs[0];
    let current = if p.power > 0.0 {
        p.power / voltage
    } else {
        0.0
    };
    let by_minute = round(p.power / 60.0 * 1000.0, 3);
    format!(
        r#"{{"id":0,"source":{},"output":{},"apower":{},"voltage":{},"current":{},"aenergy":{{"total":{},"by_minute":[{by_minute:.3},0.000,0.000],"minute_ts":{}}},"temperature":{{"tC":{temp_c},"tF":{}}}}}"#,
        Value::from(p.source),
        p.on,
        Value::from(round(p.power, 1)),
        Value::from(voltage),
        Value::from(round(current, 3)),
        Value::from(round(p.total_wh, 3)),
        unix - unix % 60,
        Value::from(round(temp_c * 9.0 / 5.0 + 32.0, 1)),
    )
}

/// `<prefix>/status/switch:0` with the whole status.
fn status(dev: &mut SimDevice, now: Duration) -> SimMessage {
    let body = status_json(dev, now);
    msg(format!("{}/status/switch:0", prefix(dev)), body)
}

/// `NotifyStatus` with the output change, then the full status.
pub(super) fn change_report(dev: &mut SimDevice, _relay: usize, now: Duration) -> Vec<SimMessage> {
    let p = &dev.plugs[0];
    let ts = dev.unix(now) as f64 + f64::from(now.subsec_millis()) / 1000.0;
    let notify = format!(
        r#"{{"src":{src},"dst":{dst},"method":"NotifyStatus","params":{{"ts":{ts:.2},"switch:0":{{"id":0,"output":{},"source":{}}}}}}}"#,
        p.on,
        Value::from(p.source),
        src = Value::from(prefix(dev)),
        dst = Value::from(format!("{}/events", prefix(dev))),
    );
    vec![
        msg(format!("{}/events/rpc", prefix(dev)), notify),
        status(dev, now),
    ]
}

pub(super) fn command(
    dev: &mut SimDevice,
    topic: &str,
    payload: &str,
    now: Duration,
) -> Vec<SimMessage> {
    let Some(rest) = topic.strip_prefix(prefix(dev)) else {
        return Vec::new();
    };
    if rest == "/command" {
        return if payload.trim() == "status_update" {
            vec![status(dev, now)]
        } else {
            Vec::new()
        };
    }
    if rest != "/rpc" {
        return Vec::new();
    }
    let Ok(request) = serde_json::from_str::<Value>(payload) else {
        return Vec::new();
    };
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let switch_id = params.get("id").and_then(Value::as_u64);
    let (result, changed) = match method {
        "Switch.Set" | "Switch.Toggle" | "Switch.GetStatus" if switch_id != Some(0) => (
            Err((
                -105,
                format!(
                    "Argument 'id', value {} not found!",
                    params.get("id").map_or("null".to_owned(), Value::to_string)
                ),
            )),
            false,
        ),
        "Switch.Set" => match params.get("on").and_then(Value::as_bool) {
            Some(on) => {
                let was_on = dev.plugs[0].on;
                dev.switch(0, on, "MQTT", now);
                (Ok(format!(r#"{{"was_on":{was_on}}}"#)), was_on != on)
            }
            None => (
                Err((-103, "Missing required argument 'on'!".to_owned())),
                false,
            ),
        },
        "Switch.Toggle" => {
            let was_on = dev.plugs[0].on;
            dev.switch(0, !was_on, "MQTT", now);
            (Ok(format!(r#"{{"was_on":{was_on}}}"#)), true)
        }
        "Switch.GetStatus" => (Ok(status_json(dev, now)), false),
        "Shelly.GetStatus" => (
            Ok(format!(r#"{{"switch:0":{}}}"#, status_json(dev, now))),
            false,
        ),
        "Shelly.GetDeviceInfo" => {
            let p = &dev.plugs[0];
            let info = json!({
                "name": p.spec.name, "id": prefix(dev), "mac": p.mac, "model": "SNPL-00112EU",
                "gen": 2, "fw_id": "20241011-114455/1.4.4-g6d2a586", "ver": "1.4.4",
                "app": "PlugS", "auth_en": false, "auth_domain": null,
            });
            (Ok(info.to_string()), false)
        }
        other => (Err((404, format!("No handler for {other}"))), false),
    };
    let mut out = Vec::new();
    // A request without `id` or `src` is a notification: it is executed but not answered.
    if let (Some(id), Some(src)) = (
        request.get("id"),
        request.get("src").and_then(Value::as_str),
    ) {
        let body = match result {
            Ok(r) => format!(r#""result":{r}"#),
            Err((code, message)) => {
                format!(
                    r#""error":{{"code":{code},"message":{}}}"#,
                    Value::from(message)
                )
            }
        };
        out.push(msg(
            format!("{src}/rpc"),
            format!(
                r#"{{"id":{id},"src":{},"dst":{},{body}}}"#,
                Value::from(prefix(dev)),
                Value::from(src)
            ),
        ));
    }
    if changed {
        out.extend(change_report(dev, 0, now));
    }
    out
}

pub(super) fn telemetry(dev: &mut SimDevice, now: Duration) -> Vec<SimMessage> {
    vec![status(dev, now)]
}

#[cfg(test)]
mod tests {
    use super::super::appliance::Appliance;
    use super::super::device::{Behaviour, Firmware, Outgoing, PlugSpec};
    use super::*;

    const P: &str = "shellyplusplugs-a8032ab12345";

    fn plug() -> SimDevice {
        SimDevice::new(
            Firmware::ShellyGen2,
            P,
            vec![PlugSpec {
                key: P.into(),
                name: "Fridge".into(),
                room: "Kitchen".into(),
                appliance: Appliance::Fridge,
            }],
            Behaviour {
                button_mean: None,
                ..Behaviour::default()
            },
            3,
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

    fn json(m: &SimMessage) -> Value {
        serde_json::from_str(&m.payload).unwrap()
    }

    #[test]
    fn switch_set_replies_to_src_and_reports_status() {
        let mut d = plug();
        let birth = published(d.on_connect(Duration::ZERO));
        assert_eq!(
            birth[0],
            SimMessage::new(format!("{P}/online"), "true").retained()
        );
        assert_eq!(birth[1].topic, format!("{P}/status/switch:0"));
        assert_eq!(json(&birth[1])["output"], true);
        let req =
            r#"{"id":7,"src":"switchboard-ui","method":"Switch.Set","params":{"id":0,"on":false}}"#;
        let out = published(d.handle_command(
            &format!("{P}/rpc"),
            req.as_bytes(),
            Duration::from_secs(2),
        ));
        assert_eq!(out[0].topic, "switchboard-ui/rpc");
        assert_eq!(
            out[0].payload,
            format!(r#"{{"id":7,"src":"{P}","dst":"switchboard-ui","result":{{"was_on":true}}}}"#)
        );
        assert_eq!(out[1].topic, format!("{P}/events/rpc"));
        assert_eq!(json(&out[1])["params"]["switch:0"]["output"], false);
        assert_eq!(json(&out[1])["params"]["switch:0"]["source"], "MQTT");
        let status = json(&out[2]);
        assert_eq!(out[2].topic, format!("{P}/status/switch:0"));
        assert_eq!(status["output"], false);
        assert_eq!(status["apower"], 0.0);
        assert!(status["aenergy"]["total"].as_f64().unwrap() >= 0.0);
        assert!(out.iter().all(|m| !m.retain && m.qos == QoS::AtLeastOnce));
    }

    #[test]
    fn toggle_get_status_and_errors() {
        let mut d = plug();
        d.on_connect(Duration::ZERO);
        let topic = format!("{P}/rpc");
        let now = Duration::from_secs(1);
        let out = published(d.handle_command(
            &topic,
            br#"{"id":"a","src":"me","method":"Switch.Toggle","params":{"id":0}}"#,
            now,
        ));
        assert_eq!(json(&out[0])["result"]["was_on"], true);
        assert_eq!(json(&out[0])["id"], "a");
        let out = published(d.handle_command(
            &topic,
            br#"{"id":2,"src":"me","method":"Switch.GetStatus","params":{"id":0}}"#,
            now,
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(json(&out[0])["result"]["output"], false);
        let out = published(d.handle_command(
            &topic,
            br#"{"id":3,"src":"me","method":"Switch.Set","params":{"id":1,"on":true}}"#,
            now,
        ));
        assert_eq!(json(&out[0])["error"]["code"], -105);
        let out =
            published(d.handle_command(&topic, br#"{"id":4,"src":"me","method":"Nope"}"#, now));
        assert_eq!(json(&out[0])["error"]["code"], 404);
        // No src: executed, not answered.
        let out = published(d.handle_command(
            &topic,
            br#"{"id":5,"method":"Switch.Set","params":{"id":0,"on":true}}"#,
            now,
        ));
        assert!(
            out.iter()
                .all(|m| m.topic != "me/rpc" && !m.topic.ends_with("null/rpc"))
        );
        assert!(d.plugs()[0].on);
    }
}
