//! Tasmota: `cmnd/<t>/...` in, `stat/<t>/...` and `tele/<t>/...` out.
//!
//! Read (with the default FullTopic `%prefix%/%topic%/`):
//! - `tele/<t>/LWT`: `Online` / `Offline`, retained: availability, and what discovers a device;
//! - `stat/<t>/POWER`, `stat/<t>/POWER<n>`: `ON` / `OFF`, the confirmation of a command;
//! - `stat/<t>/RESULT` and `tele/<t>/STATE`: JSON whose `POWER` / `POWER<n>` keys carry relay
//!   states (other keys are ignored);
//! - `tele/<t>/SENSOR`: JSON `{"ENERGY":{"Power":W,"Today":kWh,"Total":kWh,...}}` every TelePeriod;
//!   `Power` is an array on multi-channel meters.
//!
//! Written: `cmnd/<t>/POWER` (single relay) or `cmnd/<t>/POWER<n>` (1-based `n`), payload `ON` or
//! `OFF`, never retained (a retained command replays on every reboot: "ghost switching").

use serde_json::Value;

use crate::error::MessageError;
use crate::model::{Availability, Observation, OutgoingMessage};
use crate::parse;

/// Highest relay number Tasmota supports (`POWER32`).
const MAX_RELAYS: u8 = 32;

/// Reads a Tasmota topic: `None` when the topic is not Tasmota's, else the device topic `<t>`
/// and what the message says.
pub(crate) fn parse(
    topic: &str,
    payload: &[u8],
) -> Option<Result<(String, Observation), MessageError>> {
    let mut levels = topic.split('/');
    let prefix = levels.next()?;
    let device = levels.next()?;
    let leaf = levels.next()?;
    if levels.next().is_some() || device.is_empty() {
        return None;
    }
    let result = match (prefix, leaf) {
        ("tele", "LWT") => lwt(topic, payload),
        ("tele", "STATE") | ("stat", "RESULT") => power_json(topic, payload),
        ("tele", "SENSOR") => sensor(topic, payload),
        ("stat", leaf) => {
            let index = power_index(leaf)?;
            power_plain(topic, payload, index)
        }
        _ => return None,
    };
    Some(result.map(|obs| (device.to_owned(), obs)))
}

/// `POWER` is relay 0, `POWER<n>` relay `n - 1`.
fn power_index(key: &str) -> Option<u8> {
    let rest = key.strip_prefix("POWER")?;
    if rest.is_empty() {
        return Some(0);
    }
    let n: u8 = rest.parse().ok()?;
    (1..=MAX_RELAYS).contains(&n).then(|| n - 1)
}

fn lwt(topic: &str, payload: &[u8]) -> Result<Observation, MessageError> {
    let text = parse::text(topic, payload)?;
    let up = parse::availability(text).ok_or_else(|| parse::invalid(topic, text))?;
    Ok(Observation {
        availability: Some(if up {
            Availability::Online
        } else {
            Availability::Offline
        }),
        ..Observation::default()
    })
}

fn power_plain(topic: &str, payload: &[u8], index: u8) -> Result<Observation, MessageError> {
    let text = parse::text(topic, payload)?;
    let on = parse::on_off(text).ok_or_else(|| parse::invalid(topic, text))?;
    Ok(Observation {
        relays: vec![(index, on)],
        ..Observation::default()
    })
}

fn power_json(topic: &str, payload: &[u8]) -> Result<Observation, MessageError> {
    let value = parse::json(topic, payload)?;
    let Value::Object(map) = value else {
        return Err(parse::invalid(topic, "non-object JSON"));
    };
    let mut obs = Observation::default();
    for (key, v) in &map {
        if let Some(index) = power_index(key) {
            match parse::json_on_off(v) {
                Some(on) => obs.relays.push((index, on)),
                None => return Err(parse::invalid(topic, &v.to_string())),
            }
        }
    }
    Ok(obs)
}

fn sensor(topic: &str, payload: &[u8]) -> Result<Observation, MessageError> {
    let value = parse::json(topic, payload)?;
    let mut obs = Observation::default();
    let Some(energy) = value.get("ENERGY") else {
        return Ok(obs);
    };
    obs.power = channels(energy.get("Power"));
    obs.energy_total = channels(energy.get("Total"));
    obs.energy_today = energy.get("Today").and_then(|v| match v {
        Value::Array(items) => items.iter().map(parse::json_number).sum(),
        v => parse::json_number(v),
    });
    Ok(obs)
}

/// A number, or an array of numbers (one per channel).
fn channels(v: Option<&Value>) -> Vec<(u8, f64)> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .take(usize::from(u8::MAX))
            .enumerate()
            .filter_map(|(i, v)| Some((u8::try_from(i).ok()?, parse::json_number(v)?)))
            .collect(),
        Some(v) => parse::json_number(v)
            .map(|x| vec![(0, x)])
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// The command switching relay `relay` (0-based) of a device with `relay_count` relays.
pub(crate) fn command(topic: &str, relay: u8, relay_count: usize, on: bool) -> OutgoingMessage {
    let key = if relay_count <= 1 && relay == 0 {
        "POWER".to_owned()
    } else {
        format!("POWER{}", u16::from(relay) + 1)
    };
    OutgoingMessage::command(
        format!("cmnd/{topic}/{key}"),
        if on { "ON" } else { "OFF" },
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(topic: &str, payload: &str) -> Observation {
        parse(topic, payload.as_bytes()).unwrap().unwrap().1
    }

    #[test]
    fn power_keys() {
        assert_eq!(power_index("POWER"), Some(0));
        assert_eq!(power_index("POWER1"), Some(0));
        assert_eq!(power_index("POWER4"), Some(3));
        assert_eq!(power_index("POWER0"), None);
        assert_eq!(power_index("POWER33"), None);
        assert_eq!(power_index("POWERX"), None);
        assert_eq!(power_index("RESULT"), None);
    }

    #[test]
    fn foreign_topics_are_not_tasmota() {
        assert!(parse("tele/kitchen/INFO1", b"{}").is_none());
        assert!(parse("stat/kitchen/STATUS5", b"{}").is_none());
        assert!(parse("cmnd/kitchen/POWER", b"ON").is_none());
        assert!(parse("tele//LWT", b"Online").is_none());
        assert!(parse("tele/a/b/LWT", b"Online").is_none());
    }

    #[test]
    fn multi_channel_sensor() {
        let o = obs(
            "tele/dual/SENSOR",
            r#"{"Time":"2024-01-01T10:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00","Total":[1.5,2.5],"Yesterday":[0.1,0.2],"Today":[0.3,0.4],"Period":[0,0],"Power":[10,20],"ApparentPower":[12,22],"ReactivePower":[5,6],"Factor":[0.9,0.9],"Voltage":230,"Current":[0.05,0.1]}}"#,
        );
        assert_eq!(o.power, vec![(0, 10.0), (1, 20.0)]);
        assert_eq!(o.energy_total, vec![(0, 1.5), (1, 2.5)]);
        assert!((o.energy_today.unwrap() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn command_topics() {
        let m = command("kitchen", 0, 1, true);
        assert_eq!(m.topic, "cmnd/kitchen/POWER");
        assert_eq!(m.payload, b"ON");
        assert!(!m.retain);
        assert_eq!(command("strip", 2, 4, false).topic, "cmnd/strip/POWER3");
        assert_eq!(command("strip", 0, 4, false).topic, "cmnd/strip/POWER1");
    }
}
