//! Every family's parser, through the one entrance the gateway and the dashboard use:
//! `Registry::try_handle_message`.
//!
//! The input is a sequence of messages separated by the byte 0xFF (never part of UTF-8), each
//! `topic NUL payload`; a topic written `!topic` is delivered retained. Only valid topic names
//! are delivered, as a broker would. A sequence lets a
//! discovery config or an `LWT` come first and later messages reach the state it created.
//!
//! Properties: a message refused with an error changes no device (a bad payload never erases
//! good state), and the error names the message's topic; and once all are delivered (and again
//! after the command timeout):
//! - every subscription the registry asks for is a valid topic filter;
//! - every command it builds is a valid, non-retained PUBLISH of QoS 0 or 1;
//! - every device's view serialises to JSON that parses back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_devices::{Device, DeviceView, MessageError, Registry};
use switchboard_mqtt::topic::{validate_topic_filter, validate_topic_name};

fuzz_target!(|data: &[u8]| {
    let mut registry = Registry::new();
    let mut now_ms = 1_000_000;
    for record in data.split(|b| *b == 0xFF).take(16) {
        let Some(nul) = record.iter().position(|b| *b == 0) else {
            continue;
        };
        let Ok(topic) = std::str::from_utf8(&record[..nul]) else {
            continue;
        };
        let payload = &record[nul + 1..];
        let (topic, retained) = match topic.strip_prefix('!') {
            Some(topic) => (topic, true),
            None => (topic, false),
        };
        // A broker delivers only valid topic names (the gateway's codec refuses the rest).
        if validate_topic_name(topic).is_err() {
            continue;
        }
        now_ms += 1_000;
        let before: Vec<Device> = registry.devices().cloned().collect();
        match registry.try_handle_message(topic, payload, retained, now_ms) {
            Ok(_) => {}
            Err(err) => {
                let after: Vec<Device> = registry.devices().cloned().collect();
                assert!(
                    before == after,
                    "{topic:?} was refused ({err}) but changed the devices"
                );
                let text = err.to_string();
                match err {
                    // Names the level, which a meta topic is made of.
                    MessageError::Meta(_) => assert!(!text.is_empty()),
                    _ => assert!(text.contains(topic), "{text:?} does not name {topic:?}"),
                }
            }
        }
    }
    check(&mut registry, now_ms);
    registry.tick(now_ms + 3_600_000);
    check(&mut registry, now_ms + 3_600_000);
});

fn check(registry: &mut Registry, now_ms: u64) {
    for filter in registry.dynamic_subscriptions() {
        assert!(
            validate_topic_filter(&filter).is_ok(),
            "subscription to invalid filter {filter:?}"
        );
    }
    let ids: Vec<_> = registry.devices().map(|d| d.id.clone()).collect();
    for id in ids {
        let device = registry.get(&id).expect("listed").clone();
        let json = DeviceView::of(&device).to_json();
        serde_json::from_slice::<serde_json::Value>(&json).expect("the view is JSON");
        for relay in 0..device.relays.len().max(1) {
            let relay = u8::try_from(relay).expect("few relays");
            let Ok(out) = registry.command(&id, relay, true, now_ms) else {
                continue;
            };
            for message in out {
                assert!(
                    validate_topic_name(&message.topic).is_ok(),
                    "command to invalid topic {:?}",
                    message.topic
                );
                assert!(!message.retain, "retained command on {:?}", message.topic);
                assert!(message.qos <= 1);
            }
        }
    }
}
