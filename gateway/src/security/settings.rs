//! The `[security]` and `[limits]` tables.

use std::path::PathBuf;

use serde::Deserialize;

/// The `[security]` table. Without users, anonymous clients are accepted from loopback
/// addresses only; with users, anonymous clients are refused; `allow_anonymous` opens both.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Accept clients without credentials from any address.
    pub allow_anonymous: bool,
    /// Password file (`user:hash` lines: argon2id, Mosquitto `$6$` / `$7$`); reloaded on
    /// `SIGHUP`.
    pub password_file: Option<PathBuf>,
    /// ACL file in Mosquitto's format; reloaded on `SIGHUP`. Set: anything not granted is
    /// denied.
    pub acl_file: Option<PathBuf>,
}

/// The `[limits]` table: abuse limits (the global connection limit is
/// `[broker] max_connections`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most simultaneous connections from one client address (0: no limit); further ones are
    /// closed at once.
    pub max_connections_per_address: usize,
    /// Most connections that have not finished CONNECT at once; further ones are closed at once.
    pub max_handshakes: usize,
    /// PUBLISH packets a second one connection may send on average (0: no limit); exceeding
    /// it (beyond `publish_burst`) closes the connection (v5: DISCONNECT 0x96).
    pub publish_rate: u32,
    /// PUBLISH packets a connection may send in a burst above `publish_rate`.
    pub publish_burst: u32,
    /// After a failed login of a user name from an address, the next attempt of that name
    /// from that address waits this long, in milliseconds, before its password is checked;
    /// each further consecutive failure doubles it (0: no back-off).
    pub login_backoff_ms: u64,
    /// Longest failed-login delay, in milliseconds.
    pub login_backoff_max_ms: u64,
    /// Password checks (argon2id: about 19 MiB and tens of milliseconds each) that may run at
    /// once; further logins queue, one per source address, until `[broker] connect_timeout`.
    pub password_checks: usize,
    /// Most subscriptions one session may hold (0: no limit); a SUBSCRIBE beyond it gets
    /// 0x97 Quota exceeded (3.1.1: 0x80) for each new filter.
    pub max_subscriptions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections_per_address: 1000,
            max_handshakes: 1000,
            publish_rate: 0,
            publish_burst: 1000,
            login_backoff_ms: 250,
            login_backoff_max_ms: 10_000,
            password_checks: 2,
            max_subscriptions: 1000,
        }
    }
}
