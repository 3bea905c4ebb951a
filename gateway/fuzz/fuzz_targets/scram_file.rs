//! The SCRAM credential file (`[scram] file`: `user:salt:iterations:stored_key:server_key`).
//!
//! Properties: every line that parses prints back (`to_line`, what `switchboard passwd-scram`
//! writes) to a line that parses to the same user and verifier; a refused file names a line
//! that exists; a parsed file holds each user of a line that parses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::scram::{Credential, Credentials};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parsed_lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if let Ok((user, credential)) = Credential::from_line(line) {
            assert!(!user.is_empty() && !user.contains(':'));
            let printed = credential.to_line(&user);
            let (again_user, again) = Credential::from_line(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} does not parse again: {e}"));
            assert!(again_user == user && again == credential, "{printed:?}");
            parsed_lines.push(user);
        }
    }
    match Credentials::parse(text) {
        Ok(file) => {
            for user in &parsed_lines {
                assert!(file.get(user).is_some(), "{user:?} is missing");
            }
            assert!(file.len() <= parsed_lines.len());
        }
        Err(why) => {
            let line: usize = why
                .strip_prefix("line ")
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{why:?} names no line"));
            assert!(line >= 1 && line <= text.lines().count(), "{why:?}");
        }
    }
});
