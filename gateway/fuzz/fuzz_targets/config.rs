//! The configuration file, through `config::check`: the code path of `switchboard
//! check-config`, which validates with the same `Config::from_toml` call that `serve --config`
//! uses.
//!
//! Properties: the checker reports no problem exactly when the server accepts the file; every
//! problem has a message and a line that exists in the file (or 0, not placed).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::{Config, check};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let problems = check(text);
    let accepted = Config::from_toml(text).is_ok();
    assert_eq!(
        problems.is_empty(),
        accepted,
        "check {problems:?}, server accepts: {accepted}"
    );
    let lines = text.lines().count().max(1);
    for problem in &problems {
        assert!(!problem.message.is_empty(), "{problem:?}");
        assert!(
            problem.line <= lines + 1,
            "line {} of {lines}: {problem}",
            problem.line
        );
    }
});
