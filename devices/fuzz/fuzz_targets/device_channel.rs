//! The device channel and the meta topics, which any client allowed to publish there can write:
//! `switchboard/devices/<encoded id>/set` commands and the id encoding of one topic level.
//!
//! Properties:
//! - an id encodes into one topic level (no `/`, no wildcard, not starting with `$`, no
//!   control character) that decodes back to the same id, and the set topic built from it
//!   parses back to that id;
//! - a command payload parses into a command, or into `BadPayload` quoting at most 64
//!   characters of what was sent; a parsed command prints back (as JSON) to the same command.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_devices::view::{parse_set_topic, set_topic};
use switchboard_devices::{DeviceId, SetAction, SetCommand, SetError, decode_id, encode_id};
use switchboard_mqtt::topic::validate_topic_name;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let id = DeviceId::from(text);
        let level = encode_id(&id);
        assert!(
            !level.contains(['/', '+', '#', '\0']) && !level.starts_with('$'),
            "{level:?} is not one safe level"
        );
        assert!(!level.chars().any(|c| c.is_ascii_control()), "{level:?}");
        assert_eq!(decode_id(&level), Ok(id.clone()));
        if !text.is_empty() {
            let topic = set_topic(&id);
            assert!(validate_topic_name(&topic).is_ok(), "{topic:?}");
            assert_eq!(parse_set_topic(&topic), Some(Ok(id)));
        }
        // Any level the broker might deliver: decodes, or is refused; never panics.
        if let Ok(decoded) = decode_id(text) {
            assert_eq!(decode_id(&encode_id(&decoded)), Ok(decoded));
        }
        if let Some(Err(err)) = parse_set_topic(text) {
            assert!(matches!(err, SetError::BadId(_)));
        }
    }
    match SetCommand::parse(data) {
        Ok(command) => {
            let on = match command.action {
                SetAction::Set(on) => serde_json::Value::Bool(on),
                SetAction::Toggle => serde_json::Value::String("toggle".to_owned()),
            };
            let json = serde_json::json!({ "relay": command.relay, "on": on }).to_string();
            assert_eq!(SetCommand::parse(json.as_bytes()), Ok(command));
        }
        Err(SetError::BadPayload(quoted)) => assert!(quoted.chars().count() <= 64),
        Err(other) => panic!("a payload is refused as {other:?}"),
    }
});
