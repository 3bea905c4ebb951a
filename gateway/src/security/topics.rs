//! Topic filter algebra for authorization: does a filter match a topic name, cover another
//! filter, or overlap it. `$`-topics are matched by a leading wildcard only when both sides
//! start with `$` ([MQTT-4.7.2-1]).

/// Whether the filter `filter` matches the topic name `topic`: the codec's rule.
pub use switchboard_mqtt::topic::matches;

/// Whether every topic matched by `inner` is matched by `outer`.
#[must_use]
pub fn covers(outer: &str, inner: &str) -> bool {
    if inner.starts_with('$') != outer.starts_with('$') && outer.starts_with(['+', '#']) {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic name is matched by both filters.
#[must_use]
pub fn intersects(a: &str, b: &str) -> bool {
    let dollar = |f: &str| f.starts_with('$');
    let wild = |f: &str| f.starts_with(['+', '#']);
    if (dollar(a) && wild(b)) || (dollar(b) && wild(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algebra() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/+", "a/b"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("#", "x/#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(intersects("#", "a/b"));
        assert!(intersects("a/+", "+/b"));
        assert!(!intersects("a/b", "a/c"));
        assert!(intersects("a/#", "a"));
        assert!(!intersects("#", "$SYS/#"));
        assert!(!intersects("a/+", "a/b/c"));
    }
}
