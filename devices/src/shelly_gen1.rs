//! Shelly first generation: everything under `shellies/<id>/`.
//!
//! Read:
//! - `shellies/<id>/relay/<n>`: `on` / `off` (`overpower` means the relay switched itself off);
//!   seeing one discovers the device;
//! - `shellies/<id>/relay/<n>/power`: watts;
//! - `shellies/<id>/relay/<n>/energy`: a counter in watt-minutes (converted to kWh; the unit is
//!   from Shelly's documentation and unverified on every model);
//! - `shellies/<id>/online`: `true` / `false`, the retained last will.
//!
//! Ignored: `shellies/announce`, `.../announce`, `.../info`, `.../relay/<n>/command` (our own
//! commands echoed back must never read as state).
//!
//! Written: `shellies/<id>/relay/<n>/command` with `on` / `off`, never retained.

use crate::error::MessageError;
use crate::model::{MAX_RELAYS, Observation, OutgoingMessage};
use crate::parse;

/// What a Shelly Gen1 message is about.
#[derive(Debug, PartialEq)]
pub(crate) enum Gen1Message {
    /// Availability of `id`, which may not be discovered yet.
    Online { id: String, up: bool },
    /// A relay, power or energy reading of `id`.
    Relay { id: String, obs: Observation },
}

/// Reads a Shelly Gen1 topic; `None` for topics that are not Gen1 readings.
pub(crate) fn parse(topic: &str, payload: &[u8]) -> Option<Result<Gen1Message, MessageError>> {
    let rest = topic.strip_prefix("shellies/")?;
    let levels: Vec<&str> = rest.split('/').collect();
    match levels.as_slice() {
        [id, "online"] if !id.is_empty() => Some(online(topic, payload, id)),
        [id, "relay", n] if !id.is_empty() => {
            let n: u8 = n.parse().ok().filter(|n| *n < MAX_RELAYS)?;
            Some(relay(topic, payload, id, n))
        }
        [id, "relay", n, kind @ ("power" | "energy")] if !id.is_empty() => {
            let n: u8 = n.parse().ok().filter(|n| *n < MAX_RELAYS)?;
            Some(reading(topic, payload, id, n, kind))
        }
        _ => None,
    }
}

fn online(topic: &str, payload: &[u8], id: &str) -> Result<Gen1Message, MessageError> {
    let text = parse::text(topic, payload)?;
    let up = parse::availability(text).ok_or_else(|| parse::invalid(topic, text))?;
    Ok(Gen1Message::Online {
        id: id.to_owned(),
        up,
    })
}

fn relay(topic: &str, payload: &[u8], id: &str, n: u8) -> Result<Gen1Message, MessageError> {
    let text = parse::text(topic, payload)?;
    let on = if text.eq_ignore_ascii_case("overpower") {
        false
    } else {
        parse::on_off(text).ok_or_else(|| parse::invalid(topic, text))?
    };
    Ok(Gen1Message::Relay {
        id: id.to_owned(),
        obs: Observation {
            relays: vec![(n, on)],
            ..Observation::default()
        },
    })
}

fn reading(
    topic: &str,
    payload: &[u8],
    id: &str,
    n: u8,
    kind: &str,
) -> Result<Gen1Message, MessageError> {
    let text = parse::text(topic, payload)?;
    let x = parse::number(text).ok_or_else(|| parse::invalid(topic, text))?;
    let mut obs = Observation::default();
    if kind == "power" {
        obs.power.push((n, x));
    } else {
        obs.energy_total.push((n, x / 60_000.0));
    }
    Ok(Gen1Message::Relay {
        id: id.to_owned(),
        obs,
    })
}

/// The command switching relay `relay` of Shelly `id`.
pub(crate) fn command(id: &str, relay: u8, on: bool) -> OutgoingMessage {
    OutgoingMessage::command(
        format!("shellies/{id}/relay/{relay}/command"),
        if on { "on" } else { "off" },
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(
            parse("shellies/shellyplug-s-7AD8E1/relay/0", b"on")
                .unwrap()
                .unwrap(),
            Gen1Message::Relay {
                id: "shellyplug-s-7AD8E1".into(),
                obs: Observation {
                    relays: vec![(0, true)],
                    ..Observation::default()
                }
            }
        );
        assert!(parse("shellies/x/relay/0/command", b"on").is_none());
        assert!(parse("shellies/announce", b"{}").is_none());
        assert!(parse("shellies/x/announce", b"{}").is_none());
        assert!(parse("shellies/x/relay/zero", b"on").is_none());
        assert!(parse("shellies/x/relay/0", b"maybe").unwrap().is_err());
        assert!(parse("shellies/x/relay/0/power", b"lots").unwrap().is_err());
    }

    #[test]
    fn energy_is_watt_minutes() {
        let Gen1Message::Relay { obs, .. } = parse("shellies/p/relay/1/energy", b"120000")
            .unwrap()
            .unwrap()
        else {
            panic!("not a relay reading")
        };
        assert_eq!(obs.energy_total, vec![(1, 2.0)]);
    }

    #[test]
    fn command_payload() {
        let m = command("shellyplug-s-7AD8E1", 0, false);
        assert_eq!(m.topic, "shellies/shellyplug-s-7AD8E1/relay/0/command");
        assert_eq!(m.payload, b"off");
        assert!(!m.retain);
    }
}
