//! User-assigned names and rooms, stored on the broker as retained messages.
//!
//! A device's meta lives at `switchboard/meta/<encoded id>` as retained JSON
//! `{"name":"Kettle","room":"Kitchen"}` (either field may be absent or `null`); an empty retained
//! payload clears it. Every dashboard subscribes to `switchboard/meta/#`, so a name set in one
//! browser shows up in all, and retained meta arriving before the device is discovered is kept
//! and applied when it appears.
//!
//! # Id encoding
//!
//! A [`DeviceId`] may contain characters that cannot appear in one topic level (`/` in
//! Zigbee2MQTT names) or that are wildcards in a filter (`+`, `#`). The id is written into a
//! single topic level with percent-encoding of exactly these bytes: `%` (as `%25`), `/` (`%2F`),
//! `+` (`%2B`), `#` (`%23`), `$` (`%24`, so no level ever starts with `$`), and the control
//! characters U+0000 to U+001F and U+007F to U+009F, which the codec refuses in a topic (a C1
//! control is written as its two UTF-8 bytes, U+0085 as `%C2%85`). Every other character is
//! written as is.
//! Decoding accepts upper- or lower-case hex. `z2m:living/lamp` is stored at
//! `switchboard/meta/z2m:living%2Flamp`.

use serde::{Deserialize, Serialize};

use crate::error::{MessageError, MetaError};
use crate::model::{DeviceId, OutgoingMessage};

/// Topic prefix of meta messages (followed by the encoded id).
pub const META_PREFIX: &str = "switchboard/meta/";

/// A user's name and room for a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Display name overriding the family's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

impl Meta {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.room.is_none()
    }
}

/// Encodes a device id into one topic level (see the module docs).
#[must_use]
pub fn encode_id(id: &DeviceId) -> String {
    let mut out = String::with_capacity(id.as_str().len());
    for c in id.as_str().chars() {
        match c {
            '%' | '/' | '+' | '#' | '$' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                let mut utf8 = [0; 2];
                for byte in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Decodes a topic level written by [`encode_id`].
///
/// # Errors
///
/// [`MetaError::BadEncoding`] for a `%` without two hex digits or escapes that are not UTF-8.
pub fn decode_id(level: &str) -> Result<DeviceId, MetaError> {
    let bad = || MetaError::BadEncoding(level.to_owned());
    let bytes = level.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(DeviceId::from)
        .map_err(|_| bad())
}

/// The topic holding `id`'s meta.
#[must_use]
pub fn meta_topic(id: &DeviceId) -> String {
    format!("{META_PREFIX}{}", encode_id(id))
}

/// The retained message that stores `meta` for `id` (an empty payload when both fields are
/// `None`, which deletes the retained message).
#[must_use]
pub fn meta_message(id: &DeviceId, meta: &Meta) -> OutgoingMessage {
    let payload = if meta.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(meta).expect("a struct of strings serialises")
    };
    OutgoingMessage {
        topic: meta_topic(id),
        payload,
        retain: true,
        qos: 1,
    }
}

/// Reads a meta message: `Ok(None)` when the topic is not a meta topic, `Ok(Some((id, None)))`
/// when the meta is cleared.
pub(crate) fn parse(
    topic: &str,
    payload: &[u8],
) -> Option<Result<(DeviceId, Option<Meta>), MessageError>> {
    let level = topic.strip_prefix(META_PREFIX)?;
    Some(parse_inner(topic, level, payload))
}

fn parse_inner(
    topic: &str,
    level: &str,
    payload: &[u8],
) -> Result<(DeviceId, Option<Meta>), MessageError> {
    if level.is_empty() || level.contains('/') {
        return Err(MetaError::BadTopic(topic.to_owned()).into());
    }
    let id = decode_id(level)?;
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok((id, None));
    }
    let value = crate::parse::json(topic, payload)?;
    let meta: Meta = serde_json::from_value(value).map_err(|source| MessageError::InvalidJson {
        topic: topic.to_owned(),
        source,
    })?;
    let clean = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let meta = Meta {
        name: clean(meta.name),
        room: clean(meta.room),
    };
    Ok((id, (!meta.is_empty()).then_some(meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_awkward_ids() {
        for raw in [
            "tasmota:kitchen",
            "z2m:living/lamp",
            "manual:a+b#c",
            "ha:50%",
            "manual:$SYS",
            "manual:ünï/çødé",
            "manual:tab\there",
        ] {
            let id = DeviceId::from(raw);
            let level = encode_id(&id);
            assert!(!level.contains(['/', '+', '#', '$']), "{level}");
            assert_eq!(decode_id(&level).unwrap(), id);
        }
        assert_eq!(
            meta_topic(&DeviceId::from("z2m:living/lamp")),
            "switchboard/meta/z2m:living%2Flamp"
        );
    }

    #[test]
    fn control_characters_are_escaped_into_a_valid_topic() {
        // Found by the `device_channel` fuzz target: a C1 control (here U+0099) was written as
        // is, and the codec refuses it in a topic, so the view and meta topics were unusable.
        for raw in ["z2m:\u{99}", "z2m:a\u{80}b\u{9f}", "z2m:\u{7f}\u{1}"] {
            let id = DeviceId::from(raw);
            let level = encode_id(&id);
            assert!(
                switchboard_mqtt::topic::validate_topic_name(&meta_topic(&id)).is_ok(),
                "{level:?}"
            );
            assert_eq!(decode_id(&level).unwrap(), id);
        }
        assert_eq!(encode_id(&DeviceId::from("a\u{85}")), "a%C2%85");
        assert_eq!(encode_id(&DeviceId::from("\u{a0}é")), "\u{a0}é");
    }

    #[test]
    fn bad_encodings_are_errors() {
        for level in ["%", "%2", "%zz", "%FF"] {
            assert!(decode_id(level).is_err(), "{level}");
        }
        assert_eq!(decode_id("a%2fb").unwrap(), DeviceId::from("a/b"));
    }

    #[test]
    fn meta_message_is_retained_json() {
        let id = DeviceId::from("tasmota:kitchen");
        let m = meta_message(
            &id,
            &Meta {
                name: Some("Kettle".into()),
                room: None,
            },
        );
        assert_eq!(m.topic, "switchboard/meta/tasmota:kitchen");
        assert_eq!(m.payload_str(), r#"{"name":"Kettle"}"#);
        assert!(m.retain);
        let cleared = meta_message(&id, &Meta::default());
        assert!(cleared.payload.is_empty() && cleared.retain);
    }

    #[test]
    fn parse_meta() {
        let (id, meta) = parse(
            "switchboard/meta/z2m:a%2Fb",
            br#"{"name":" Lamp ","room":null}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(id.as_str(), "z2m:a/b");
        assert_eq!(meta.unwrap().name.as_deref(), Some("Lamp"));
        assert!(parse("switchboard/other", b"").is_none());
        assert!(parse("switchboard/meta/a/b", b"{}").unwrap().is_err());
        assert!(parse("switchboard/meta/a", b"[1]").unwrap().is_err());
        assert_eq!(parse("switchboard/meta/a", b"").unwrap().unwrap().1, None);
    }
}
