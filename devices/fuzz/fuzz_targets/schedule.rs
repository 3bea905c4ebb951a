//! The schedule wire format (`switchboard/schedules/<id>`, retained JSON), as the gateway reads
//! it, and the text forms inside it (`"07:30"`, `"+05:30"`).
//!
//! Properties:
//! - a schedule that parses re-serialises to JSON that parses back to the same schedule;
//! - one that validates becomes a retained QoS 1 message on its own topic whose payload reads
//!   back to it; one that does not is refused by `to_message` with the same reason;
//! - the next firing of an `At` rule is strictly later than the time asked about, within 8 days;
//! - a time of day or UTC offset that parses prints back to text that parses to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_devices::schedule::{self, Rule, Schedule, TimeOfDay, UtcOffset};

const WEEK_AND_A_DAY_MS: u64 = 8 * 86_400_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(time) = TimeOfDay::parse(text) {
            assert!(time.minutes() < 1440);
            assert_eq!(TimeOfDay::parse(&time.to_string()), Ok(time));
        }
        if let Ok(offset) = text.parse::<UtcOffset>() {
            assert!(offset.0.abs() <= 14 * 3600 + 59 * 60);
            let sign = if offset.0 < 0 { '-' } else { '+' };
            let secs = offset.0.abs();
            let printed = format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60);
            assert_eq!(printed.parse::<UtcOffset>(), Ok(offset));
        } else if let Err(err) = text.parse::<UtcOffset>() {
            assert!(err.contains("UTC offset"), "unclear error {err:?}");
        }
    }
    let Ok(parsed) = serde_json::from_slice::<Schedule>(data) else {
        return;
    };
    let json = serde_json::to_vec(&parsed).expect("a schedule serialises");
    let again: Schedule = serde_json::from_slice(&json).expect("re-serialised schedule parses");
    assert_eq!(again, parsed);
    match parsed.validate() {
        Ok(()) => {
            let message = parsed.to_message().expect("a valid schedule publishes");
            assert!(message.retain && message.qos == 1);
            assert_eq!(message.topic, schedule::topic(&parsed.id));
            let stored: Schedule =
                serde_json::from_slice(&message.payload).expect("the stored payload parses");
            assert_eq!(stored, parsed);
        }
        Err(why) => {
            assert_eq!(parsed.to_message().err(), Some(why));
            assert!(!why.message().is_empty());
        }
    }
    // The firing time from a few instants and offsets taken from the input itself.
    let seed = data
        .iter()
        .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));
    let after_ms = seed % (4_102_444_800_000); // up to the year 2100
    let offset = UtcOffset((seed % (2 * 50_400 + 1)) as i32 - 50_400);
    for (after_ms, offset) in [
        (after_ms, offset),
        (0, UtcOffset(-50_400)),
        (after_ms, UtcOffset(0)),
    ] {
        match (&parsed.rule, parsed.rule.next_fire(after_ms, &offset)) {
            (Rule::At { .. }, Some(at)) => {
                assert!(at > after_ms, "fires at {at}, not after {after_ms}");
                assert!(
                    at - after_ms <= WEEK_AND_A_DAY_MS,
                    "fires too late: {at} after {after_ms}"
                );
            }
            (Rule::At { .. }, None) => panic!("an At rule always fires within a week"),
            (Rule::OffAfter { .. }, fire) => assert_eq!(fire, None),
        }
    }
});
