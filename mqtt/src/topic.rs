//! Topic names, topic filters and matching (section 4.7), plus shared subscriptions
//! (`$share/{group}/{filter}`, section 4.8.2). The decoder only enforces what makes a packet
//! malformed; the broker calls these for the rest (a bad filter gets a per-filter SUBACK code).

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero-length topic name or filter.
    #[error("[MQTT-4.7.3-1] topic names and filters must be at least one character long")]
    Empty,
    /// Longer than 65,535 bytes.
    #[error("[MQTT-4.7.3-3] topic is longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000.
    #[error("[MQTT-4.7.3-2] topic contains the null character U+0000")]
    NullCharacter,
    /// Contains a control character (U+0001..U+001F, U+007F..U+009F). Section 1.5.4 lets a
    /// receiver treat these as malformed; no device convention uses them, and they make logs
    /// and topic listings lie, so they are refused.
    #[error("[MQTT-1.5.4] topic contains a control character")]
    ControlCharacter,
    /// A topic name containing `+` or `#`.
    #[error("[MQTT-4.7.0-1] topic names must not contain wildcard characters")]
    WildcardInName,
    /// `#` not alone in the last level.
    #[error("[MQTT-4.7.1-2] '#' must be the last character and alone in its level")]
    MultiLevelWildcard,
    /// `+` not alone in its level.
    #[error("[MQTT-4.7.1-3] '+' must occupy an entire level")]
    SingleLevelWildcard,
    /// A shared subscription whose share name is empty or contains `/`, `+` or `#`.
    #[error("[MQTT-4.8.2-1] share name must be non-empty without '/', '+' or '#'")]
    InvalidShareName,
    /// A shared subscription without a topic filter after the share name.
    #[error("[MQTT-4.8.2-2] shared subscription has no topic filter")]
    EmptySharedFilter,
}

const MAX_LEN: usize = 65_535;

fn common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    if s.chars()
        .any(|c| matches!(c, '\u{1}'..='\u{1f}' | '\u{7f}'..='\u{9f}'))
    {
        return Err(TopicError::ControlCharacter);
    }
    Ok(())
}

/// Checks a topic name (as in PUBLISH): non-empty, at most 65,535 bytes, no U+0000, no
/// wildcards.
///
/// # Errors
/// The first rule broken.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter (as in SUBSCRIBE): the rules of a name, except that `+` may fill a
/// level and `#` may fill the last level. A `$share/{group}/{filter}` filter is checked as a
/// shared subscription.
///
/// # Errors
/// The first rule broken.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    common(filter)?;
    let filter = match parse_shared(filter)? {
        Some(shared) => shared.filter,
        None => filter,
    };
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcard);
        }
    }
    Ok(())
}

/// Whether `topic` (a topic name) matches `filter` (a non-shared topic filter; strip a
/// `$share/{group}/` prefix with [`parse_shared`] first). Topics starting with `$` are not
/// matched by filters starting with a wildcard [MQTT-4.7.2-1].
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A shared subscription `$share/{group}/{filter}`, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name.
    pub group: &'a str,
    /// The topic filter the group subscribes to.
    pub filter: &'a str,
}

/// Splits a `$share/{group}/{filter}` filter; `Ok(None)` for an ordinary filter.
///
/// # Errors
/// [`TopicError::InvalidShareName`] or [`TopicError::EmptySharedFilter`].
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let Some((group, filter)) = rest.split_once('/') else {
        return Err(TopicError::EmptySharedFilter);
    };
    if group.is_empty() || group.contains(['+', '#']) {
        return Err(TopicError::InvalidShareName);
    }
    if filter.is_empty() {
        return Err(TopicError::EmptySharedFilter);
    }
    Ok(Some(SharedFilter { group, filter }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0"), Err(TopicError::NullCharacter));
        for bad in ["a\nb", "a\u{1}", "\u{1f}", "a\u{7f}", "x/\u{9f}"] {
            assert_eq!(
                validate_topic_name(bad),
                Err(TopicError::ControlCharacter),
                "{bad:?}"
            );
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::ControlCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(validate_topic_name("caf\u{e9}/\u{a0}"), Ok(()));
        assert_eq!(
            validate_topic_name(&"a".repeat(65_536)),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "a/+/b",
            "/",
            "+/",
            "$SYS/#",
            "$share/g/a/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_topic_filter("a#"),
            Err(TopicError::MultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("#/a"),
            Err(TopicError::MultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("a+"),
            Err(TopicError::SingleLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("a/+b/c"),
            Err(TopicError::SingleLevelWildcard)
        );
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_filter("$share/g/a#"),
            Err(TopicError::MultiLevelWildcard)
        );
    }

    #[test]
    fn matching_examples_from_4_7() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("#", "a/b/c"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn dollar_topics() {
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(
            parse_shared("$share/g1/a/+"),
            Ok(Some(SharedFilter {
                group: "g1",
                filter: "a/+"
            }))
        );
        assert_eq!(
            parse_shared("$share/g1"),
            Err(TopicError::EmptySharedFilter)
        );
        assert_eq!(
            parse_shared("$share/g1/"),
            Err(TopicError::EmptySharedFilter)
        );
        assert_eq!(parse_shared("$share//a"), Err(TopicError::InvalidShareName));
        assert_eq!(
            parse_shared("$share/g+/a"),
            Err(TopicError::InvalidShareName)
        );
    }
}
