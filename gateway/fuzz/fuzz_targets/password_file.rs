//! The password file (`[security] password_file`, Mosquitto's format: `user:$7$...`, argon2id
//! PHC strings, `$6$`).
//!
//! Properties: a file that parses prints back (`to_text`, what `switchboard passwd` writes) to
//! a file that parses to the same users and hashes; a refused file names a line that exists.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::security::LoadError;
use switchboard::security::{PasswordFile, PasswordHash};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PasswordFile::parse(text) {
        Ok(file) => {
            let printed = file.to_text();
            let again = PasswordFile::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} does not parse again: {e}"));
            assert_eq!(again, file);
            for user in file.users() {
                assert!(!user.is_empty() && !user.contains(':'));
                let hash = file.get(user).expect("listed");
                assert_eq!(PasswordHash::parse(&hash.to_text()).as_ref(), Ok(hash));
            }
        }
        Err(LoadError::Line { line, why }) => {
            assert!(
                line >= 1 && line <= text.lines().count(),
                "line {line} of {text:?}"
            );
            assert!(!why.is_empty());
        }
        Err(other) => panic!("parsing text gave {other:?}"),
    }
});
