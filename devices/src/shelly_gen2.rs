//! Shelly second generation and later (Plus, Pro, Gen3, Gen4): JSON-RPC over MQTT.
//!
//! Read (`<prefix>` is the device's topic prefix, by default its id such as
//! `shellyplusplugs-a8032ab12345`; only single-level prefixes are recognised, matching the
//! `+/status/+`, `+/online` and `+/events/rpc` subscriptions):
//! - `<prefix>/status/switch:<n>`: JSON with `output` (bool), `apower` (W), `aenergy.total` (Wh);
//!   seeing one discovers the device;
//! - `<prefix>/events/rpc`: `NotifyStatus` / `NotifyFullStatus` notifications whose `params`
//!   carry partial `switch:<n>` objects;
//! - `<prefix>/online`: `true` / `false`, the retained last will. Any `<x>/online` topic matches
//!   the filter, so availability of unknown prefixes is only kept until the device shows up.
//!
//! Written: `<prefix>/rpc` with
//! `{"id":<n>,"src":"<src>","method":"Switch.Set","params":{"id":<relay>,"on":<bool>}}`, never
//! retained; the device replies on `<src>/rpc` and confirms through `status/switch:<n>`.

use serde_json::{Map, Value};

use crate::error::MessageError;
use crate::model::{MAX_RELAYS, Observation, OutgoingMessage};
use crate::parse;

/// First topic levels that belong to other conventions and are never a Gen2 prefix.
const RESERVED: [&str; 8] = [
    "homeassistant",
    "tele",
    "stat",
    "cmnd",
    "shellies",
    "zigbee2mqtt",
    "switchboard",
    "",
];

/// What a Shelly Gen2 message is about.
#[derive(Debug, PartialEq)]
pub(crate) enum Gen2Message {
    /// Availability of `prefix`, which may not be a Shelly at all.
    Online { prefix: String, up: bool },
    /// Switch readings of `prefix`.
    Status { prefix: String, obs: Observation },
}

/// Reads a Gen2 topic; `None` for topics that are not Gen2 readings.
pub(crate) fn parse(topic: &str, payload: &[u8]) -> Option<Result<Gen2Message, MessageError>> {
    let levels: Vec<&str> = topic.split('/').collect();
    let (prefix, rest) = levels.split_first()?;
    if RESERVED.contains(prefix) || prefix.starts_with('$') {
        return None;
    }
    let prefix = (*prefix).to_owned();
    match rest {
        ["online"] => Some(online(topic, payload, prefix)),
        ["status", component] => {
            let n = switch_index(component)?;
            Some(status(topic, payload, prefix, n))
        }
        ["events", "rpc"] => notification(topic, payload, prefix),
        _ => None,
    }
}

fn switch_index(component: &str) -> Option<u8> {
    component
        .strip_prefix("switch:")?
        .parse()
        .ok()
        .filter(|n| *n < MAX_RELAYS)
}

fn online(topic: &str, payload: &[u8], prefix: String) -> Result<Gen2Message, MessageError> {
    let text = parse::text(topic, payload)?;
    let up = parse::availability(text).ok_or_else(|| parse::invalid(topic, text))?;
    Ok(Gen2Message::Online { prefix, up })
}

fn status(topic: &str, payload: &[u8], prefix: String, n: u8) -> Result<Gen2Message, MessageError> {
    let value = parse::json(topic, payload)?;
    let Value::Object(map) = value else {
        return Err(parse::invalid(topic, "non-object JSON"));
    };
    let mut obs = Observation::default();
    read_switch(topic, &map, n, &mut obs)?;
    Ok(Gen2Message::Status { prefix, obs })
}

/// Reads the fields of one `switch:<n>` status object present in `map` into `obs`.
fn read_switch(
    topic: &str,
    map: &Map<String, Value>,
    n: u8,
    obs: &mut Observation,
) -> Result<(), MessageError> {
    if let Some(v) = map.get("output") {
        let on = parse::json_on_off(v).ok_or_else(|| parse::invalid(topic, &v.to_string()))?;
        obs.relays.push((n, on));
    }
    if let Some(w) = map.get("apower").and_then(parse::json_number) {
        obs.power.push((n, w));
    }
    if let Some(wh) = map
        .get("aenergy")
        .and_then(|e| e.get("total"))
        .and_then(parse::json_number)
    {
        obs.energy_total.push((n, wh / 1000.0));
    }
    Ok(())
}

fn notification(
    topic: &str,
    payload: &[u8],
    prefix: String,
) -> Option<Result<Gen2Message, MessageError>> {
    let value = match parse::json(topic, payload) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let method = value.get("method")?.as_str()?;
    if method != "NotifyStatus" && method != "NotifyFullStatus" {
        return None;
    }
    let params = value.get("params")?.as_object()?;
    let mut obs = Observation::default();
    for (key, v) in params {
        if let (Some(n), Some(map)) = (switch_index(key), v.as_object())
            && let Err(e) = read_switch(topic, map, n, &mut obs)
        {
            return Some(Err(e));
        }
    }
    if obs.is_empty() {
        return None;
    }
    Some(Ok(Gen2Message::Status { prefix, obs }))
}

/// The `Switch.Set` request for relay `relay` of `prefix`, with request id `rpc_id` and reply
/// prefix `src`.
pub(crate) fn command(
    prefix: &str,
    src: &str,
    rpc_id: u64,
    relay: u8,
    on: bool,
) -> OutgoingMessage {
    let src = Value::String(src.to_owned());
    OutgoingMessage::command(
        format!("{prefix}/rpc"),
        format!(
            r#"{{"id":{rpc_id},"src":{src},"method":"Switch.Set","params":{{"id":{relay},"on":{on}}}}}"#
        ),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes_are_not_gen2() {
        assert!(parse("zigbee2mqtt/online", b"true").is_none());
        assert!(parse("tele/status/switch:0", b"{}").is_none());
        assert!(parse("$SYS/online", b"true").is_none());
        assert!(parse("a/b/online", b"true").is_none());
        assert!(parse("plug/status/sys", b"{}").is_none());
        assert!(parse("plug/status/switch:x", b"{}").is_none());
    }

    #[test]
    fn notify_status_is_partial() {
        let msg = parse(
            "shellypro4pm-abc/events/rpc",
            br#"{"src":"shellypro4pm-abc","dst":"shellypro4pm-abc/events","method":"NotifyStatus","params":{"ts":1700000000.5,"switch:2":{"id":2,"output":true,"source":"button"}}}"#,
        )
        .unwrap()
        .unwrap();
        let Gen2Message::Status { prefix, obs } = msg else {
            panic!("not status")
        };
        assert_eq!(prefix, "shellypro4pm-abc");
        assert_eq!(obs.relays, vec![(2, true)]);
        assert!(obs.power.is_empty());
        assert!(
            parse(
                "p/events/rpc",
                br#"{"method":"NotifyEvent","params":{"events":[]}}"#
            )
            .is_none()
        );
    }

    #[test]
    fn command_json_is_exact() {
        let m = command("shellyplusplugs-a8032ab12345", "switchboard", 7, 0, true);
        assert_eq!(m.topic, "shellyplusplugs-a8032ab12345/rpc");
        assert_eq!(
            m.payload_str(),
            r#"{"id":7,"src":"switchboard","method":"Switch.Set","params":{"id":0,"on":true}}"#
        );
        assert!(!m.retain);
        let v: Value = serde_json::from_slice(&command("p", "a\"b", 1, 3, false).payload).unwrap();
        assert_eq!(v["src"], "a\"b");
        assert_eq!(v["params"]["on"], false);
    }
}
