//! The dashboard's file server: a request path to a file under the root (`http.rs`).
//!
//! Properties: a path that is served maps to a relative path of plain names only (no `..`, no
//! root, no `\`, no NUL), which stays under the root; a path with a `..` segment, plain or
//! percent-encoded, is refused; a served path written back as a URL path maps to itself.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use switchboard::fuzzing::safe_relative_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let lowered = path
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace("%2f", "/");
    let has_parent = lowered.split('/').any(|segment| segment == "..");
    let Some(relative) = safe_relative_path(path) else {
        return;
    };
    assert!(!has_parent, "{path:?} leaves the root as {relative:?}");
    assert!(relative.is_relative(), "{path:?} gave {relative:?}");
    for component in relative.components() {
        let Component::Normal(name) = component else {
            panic!("{path:?} gave {relative:?} with {component:?}");
        };
        let name = name.to_str().expect("decoded paths are UTF-8");
        assert!(
            !name.contains(['\\', '\0', '/']) && !name.is_empty(),
            "{name:?}"
        );
    }
    let root = Path::new("/srv/dist");
    assert!(root.join(&relative).starts_with(root));
    let text = relative.to_str().expect("UTF-8");
    if !text.contains('%') {
        assert_eq!(
            safe_relative_path(&format!("/{text}")),
            Some(relative.clone())
        );
    }
});
