//! The ACL file (`[security] acl_file`, Mosquitto's format).
//!
//! The input is the file, then a NUL and a probe `user NUL client NUL topic` (an empty user is
//! an anonymous client). Properties: a refused file names a line that exists; for a topic name
//! (no wildcard, not a `$` topic), subscribing to exactly that topic is allowed if and only if
//! reading it is, so SUBSCRIBE and delivery never disagree; checks never panic whatever the
//! user name, client id and filter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::security::{Acl, LoadError, Want};
use switchboard_mqtt::topic::validate_topic_filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\0');
    let file = parts.next().unwrap_or_default();
    let user = parts.next().filter(|u| !u.is_empty());
    let client = parts.next().unwrap_or("client");
    let topic = parts.next().unwrap_or("a/b");
    let acl = match Acl::parse(file) {
        Ok(acl) => acl,
        Err(LoadError::Line { line, why }) => {
            assert!(
                line >= 1 && line <= file.lines().count(),
                "line {line} of {file:?}"
            );
            assert!(!why.is_empty());
            return;
        }
        Err(other) => panic!("parsing text gave {other:?}"),
    };
    let read = acl.allows_topic(user, client, topic, Want::Read);
    let _ = acl.allows_topic(user, client, topic, Want::Write);
    if validate_topic_filter(topic).is_ok() {
        let subscribe = acl.allows_subscribe(user, client, topic);
        if !topic.contains(['+', '#']) && !topic.starts_with('$') {
            assert_eq!(
                subscribe, read,
                "subscribe {subscribe} but read {read} for {topic:?} as {user:?}/{client:?}"
            );
        }
    }
});
