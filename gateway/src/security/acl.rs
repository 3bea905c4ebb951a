//! Access control lists in Mosquitto's `acl_file` format, so existing files work unchanged:
//!
//! ```text
//! # before any `user` line: rules for anonymous clients
//! topic read $SYS/#
//! user alice
//! topic readwrite home/#
//! topic deny home/secret/#
//! pattern write devices/%c/state     # patterns apply to every client
//! pattern read users/%u/#
//! ```
//!
//! As in Mosquitto: with an ACL file, anything not granted is denied, and a matching `deny`
//! wins over any grant. `topic` lines apply to the section's user (anonymous clients before the
//! first `user` line); `pattern` lines apply to every client, with `%u` (user name) and `%c`
//! (client id) substituted. A pattern needing a value the client does not have, or whose value
//! contains `/`, `+` or `#`, does not apply.

use std::collections::HashMap;
use std::path::Path;

use super::LoadError;
use super::topics::{covers, intersects, matches};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Receive messages (subscribe and delivery).
    Read,
    /// Publish.
    Write,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Self::ReadWrite, _) | (Self::Read, Want::Read) | (Self::Write, Want::Write)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl Acl {
    /// Parses the text of an ACL file.
    ///
    /// # Errors
    /// [`LoadError::Line`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let mut acl = Self::default();
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: &str| LoadError::Line {
                line: i + 1,
                why: why.to_owned(),
            };
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` needs a name"));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (access, filter) = match rest.split_once([' ', '\t']) {
                        Some((word, filter)) => match word {
                            "read" => (Access::Read, filter.trim()),
                            "write" => (Access::Write, filter.trim()),
                            "readwrite" => (Access::ReadWrite, filter.trim()),
                            "deny" => (Access::Deny, filter.trim()),
                            // Mosquitto: no access word means readwrite.
                            _ => (Access::ReadWrite, rest),
                        },
                        None => (Access::ReadWrite, rest),
                    };
                    if filter.is_empty() {
                        return Err(err("missing topic filter"));
                    }
                    if switchboard_mqtt::topic::validate_topic_filter(filter).is_err() {
                        return Err(err("invalid topic filter"));
                    }
                    let rule = Rule {
                        access,
                        filter: filter.to_owned(),
                    };
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                _ => return Err(err("expected `user`, `topic` or `pattern`")),
            }
        }
        Ok(acl)
    }

    /// Reads and parses an ACL file.
    ///
    /// # Errors
    /// [`LoadError::Io`] or [`LoadError::Line`].
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io(e.to_string()))?;
        Self::parse(&text)
    }

    /// The rules applying to a client, patterns substituted.
    fn rules(&self, username: Option<&str>, client_id: &str) -> Vec<Rule> {
        let own = match username {
            Some(name) => self.users.get(name).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let mut rules = own.to_vec();
        let safe = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#']);
        for pattern in &self.patterns {
            let mut filter = pattern.filter.clone();
            if filter.contains("%u") {
                match username {
                    Some(name) if safe(name) => filter = filter.replace("%u", name),
                    _ => continue,
                }
            }
            if filter.contains("%c") {
                if !safe(client_id) {
                    continue;
                }
                filter = filter.replace("%c", client_id);
            }
            rules.push(Rule {
                access: pattern.access,
                filter,
            });
        }
        rules
    }

    /// Whether the client may publish to / receive from the topic name `topic`.
    #[must_use]
    pub fn allows_topic(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        want: Want,
    ) -> bool {
        let rules = self.rules(username, client_id);
        if rules
            .iter()
            .any(|r| r.access == Access::Deny && matches(&r.filter, topic))
        {
            return false;
        }
        rules
            .iter()
            .any(|r| r.access.grants(want) && matches(&r.filter, topic))
    }

    /// Whether the client may subscribe to `filter` (without a `$share/` prefix): some read
    /// grant overlaps it and no `deny` covers all of it. Messages are checked again one by one
    /// at delivery ([`Acl::allows_topic`]), so a wide subscription only ever receives what is
    /// readable.
    #[must_use]
    pub fn allows_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let rules = self.rules(username, client_id);
        if rules
            .iter()
            .any(|r| r.access == Access::Deny && covers(&r.filter, filter))
        {
            return false;
        }
        rules
            .iter()
            .any(|r| r.access.grants(Want::Read) && intersects(&r.filter, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous
topic read public/#

user alice
topic readwrite home/#
topic deny home/secret/#
topic write cmnd/+/POWER

pattern read users/%u/#
pattern write devices/%c/state
";

    #[test]
    fn mosquitto_semantics() {
        let acl = Acl::parse(FILE).unwrap();
        let a = Some("alice");
        assert!(acl.allows_topic(a, "c1", "home/kitchen", Want::Write));
        assert!(acl.allows_topic(a, "c1", "home/kitchen", Want::Read));
        assert!(!acl.allows_topic(a, "c1", "home/secret/x", Want::Read));
        assert!(acl.allows_topic(a, "c1", "cmnd/k/POWER", Want::Write));
        assert!(!acl.allows_topic(a, "c1", "cmnd/k/POWER", Want::Read));
        assert!(
            !acl.allows_topic(a, "c1", "public/x", Want::Read),
            "not alice's"
        );
        assert!(acl.allows_topic(None, "c1", "public/x", Want::Read));
        assert!(!acl.allows_topic(None, "c1", "public/x", Want::Write));
        assert!(acl.allows_topic(a, "c1", "users/alice/x", Want::Read));
        assert!(!acl.allows_topic(a, "c1", "users/bob/x", Want::Read));
        assert!(!acl.allows_topic(None, "c1", "users//x", Want::Read));
        assert!(acl.allows_topic(None, "c1", "devices/c1/state", Want::Write));
        assert!(!acl.allows_topic(None, "c2", "devices/c1/state", Want::Write));
        assert!(!acl.allows_topic(Some("bob"), "c1", "home/x", Want::Read));
        // Subscriptions: overlap with a read grant, not entirely denied.
        assert!(acl.allows_subscribe(a, "c1", "#"));
        assert!(acl.allows_subscribe(a, "c1", "home/+"));
        assert!(!acl.allows_subscribe(a, "c1", "home/secret/#"));
        assert!(!acl.allows_subscribe(a, "c1", "cmnd/#"));
        assert!(!acl.allows_subscribe(Some("bob"), "c1", "home/#"));
    }

    #[test]
    fn bad_lines_are_reported() {
        let err = Acl::parse("user a\ntopic read a/#/b\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(Acl::parse("topik read a\n").is_err());
        assert!(Acl::parse("user\n").is_err());
    }
}
