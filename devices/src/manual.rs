//! Plain switches the user adds by hand ([`ManualSwitch`]): no discovery, no availability, just a
//! command topic, an optional state topic and the payloads.
//!
//! Read: the state topic, matched against `state_on` / `state_off` exactly, then
//! case-insensitively, then with the common spellings (`ON`/`on`/`true`/`1`).
//!
//! Written: `command_topic` with `payload_on` / `payload_off`, never retained. Without a state
//! topic commands are optimistic: the relay takes the new state at once.

use crate::error::MessageError;
use crate::model::{ManualSwitch, OutgoingMessage};
use crate::parse;

/// Reads a message on `sw`'s state topic.
pub(crate) fn state(sw: &ManualSwitch, topic: &str, payload: &[u8]) -> Result<bool, MessageError> {
    let text = parse::text(topic, payload)?;
    if text == sw.state_on.trim() {
        Ok(true)
    } else if text == sw.state_off.trim() {
        Ok(false)
    } else if text.eq_ignore_ascii_case(sw.state_on.trim()) {
        Ok(true)
    } else if text.eq_ignore_ascii_case(sw.state_off.trim()) {
        Ok(false)
    } else {
        parse::on_off(text).ok_or_else(|| parse::invalid(topic, text))
    }
}

/// The command switching `sw`.
pub(crate) fn command(sw: &ManualSwitch, on: bool) -> OutgoingMessage {
    let payload = if on { &sw.payload_on } else { &sw.payload_off };
    OutgoingMessage::command(sw.command_topic.clone(), payload.as_bytes().to_vec(), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_payloads() {
        let mut sw =
            ManualSwitch::new("esp", "Lamp", "room/light/set").with_state_topic("room/light");
        sw.state_on = "1".into();
        sw.state_off = "0".into();
        sw.payload_on = "press".into();
        assert!(state(&sw, "room/light", b"1").unwrap());
        assert!(!state(&sw, "room/light", b"0").unwrap());
        assert!(state(&sw, "room/light", b"on").unwrap());
        assert!(state(&sw, "room/light", b"dim").is_err());
        let m = command(&sw, true);
        assert_eq!(m.topic, "room/light/set");
        assert_eq!(m.payload, b"press");
        assert!(!m.retain);
    }
}
