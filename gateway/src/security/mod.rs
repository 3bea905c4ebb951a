//! Users, ACLs, scoped tokens, the anonymous policy and abuse limits.
//!
//! Where it sits in the flow: a connection task asks [`Security`] for a handshake slot and a
//! per-address slot as soon as it starts, then calls [`Authenticator::authenticate`] (on the
//! blocking pool: password hashes are slow) with the CONNECT's credentials, the resolved client
//! address and, for WebSockets, the `Origin` header and `?token=`. The [`Identity`] it returns
//! travels with the connection; every subscribe, publish and delivery is then decided by
//! [`Security`]'s [`Authorizer`] implementation (token scope, else the ACL file, plus the
//! `[broker] deny_subscribe` list).
//!
//! Rules (password file, ACL file, token key and revocations) live in one immutable [`Rules`]
//! value behind a lock that is only held to clone an `Arc`; `SIGHUP` builds a new one and swaps
//! it in ([`Security::reload`]), so open connections keep running under the new rules. A reload
//! error keeps the old rules.

pub mod acl;
pub mod cli;
pub mod limits;
pub mod passwd;
pub mod token;
pub mod topics;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use switchboard_mqtt::ReasonCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::broker::{Authorizer, ClientInfo, ConfigAuthorizer, Transport};
use crate::config::{LimitsConfig, SecurityConfig};

pub use self::acl::{Acl, Want};
pub use self::limits::{AddressGuard, LoginBackoff, TokenBucket};
pub use self::passwd::{PasswordFile, PasswordHash};
pub use self::token::{Claims, TokenError, TokenKeys};

/// Error loading a password, ACL or token file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{0}")]
    Io(String),
    /// A line is invalid.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// Who a connection is, decided once at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (or credentials not checked because no users are configured).
    Anonymous,
    /// A user from the password file, password verified.
    User(String),
    /// A scoped token.
    Token(Arc<Claims>),
}

impl Identity {
    /// The user name ACL rules are looked up with (`None`: the anonymous section).
    #[must_use]
    pub fn acl_user(&self) -> Option<&str> {
        match self {
            Self::User(name) => Some(name),
            Self::Anonymous | Self::Token(_) => None,
        }
    }

    /// When a token identity expires (Unix seconds).
    #[must_use]
    pub fn expires(&self) -> Option<u64> {
        match self {
            Self::Token(claims) => claims.expires,
            _ => None,
        }
    }
}

/// What the transport knows about a connection beyond its byte stream (WebSocket: the `Origin`
/// header and the `?token=` query parameter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionMeta {
    /// The browser's `Origin` header.
    pub origin: Option<String>,
    /// A token from the WebSocket URL (`/mqtt?token=...`).
    pub token: Option<String>,
    /// Common name of the TLS client certificate verified against `[tls] client_ca` (MQTT over
    /// TLS, WSS). Set: it is the connection's user name and the client counts as authenticated
    /// (`Identity::User`) without a password; see `broker::enhanced_auth`.
    pub cert_cn: Option<String>,
}

/// Everything authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct ConnectInfo<'a> {
    /// Client identifier as sent (may be empty).
    pub client_id: &'a str,
    /// CONNECT user name.
    pub username: Option<&'a str>,
    /// CONNECT password.
    pub password: Option<&'a [u8]>,
    /// The client address (for WebSockets behind a trusted proxy: the forwarded one).
    pub peer: SocketAddr,
    /// How the client came in.
    pub transport: Transport,
    /// WebSocket `Origin` header.
    pub origin: Option<&'a str>,
    /// WebSocket `?token=`.
    pub url_token: Option<&'a str>,
}

/// Decides who a connecting client is.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The identity for a CONNECT, or the CONNACK reason code refusing it:
    /// `BadUserNameOrPassword` (0x86, 3.1.1 return code 4) for wrong credentials,
    /// `NotAuthorized` (0x87, return code 5) for a refused anonymous client or a token that is
    /// expired, revoked or bound to another origin.
    ///
    /// May be slow (password hashing): call it on the blocking pool.
    ///
    /// # Errors
    /// The reason code for the CONNACK.
    fn authenticate(&self, info: &ConnectInfo<'_>) -> Result<Identity, ReasonCode>;
}

/// The loaded rules, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Rules {
    /// Users, when a password file is configured.
    pub users: Option<PasswordFile>,
    /// The ACL, when an ACL file is configured.
    pub acl: Option<Acl>,
    /// Token key and revocations, when there is a data directory.
    pub tokens: Option<TokenKeys>,
}

/// Most sources remembered for "warn once" logging before the set is cleared.
const WARNED_MAX: usize = 4096;

/// Authentication, authorization and abuse limits for one broker.
#[derive(Debug)]
pub struct Security {
    config: SecurityConfig,
    limits: LimitsConfig,
    data_dir: Option<PathBuf>,
    deny_subscribe: ConfigAuthorizer,
    /// The rules in force. Held only to clone the `Arc` (no `.await`, no other lock).
    rules: RwLock<Arc<Rules>>,
    /// Whether `rules.acl` is set (a lock-free fast path for every delivery).
    has_acl: AtomicBool,
    /// Sources already told how to add users (bounded; cleared when full). No `.await` held.
    warned: Mutex<HashSet<IpAddr>>,
    /// Failed logins per source address.
    backoff: LoginBackoff,
    /// Open connections per source address.
    per_address: Arc<limits::AddressCounts>,
    /// Connections that have not finished CONNECT; a permit lives in the connection task until
    /// its CONNACK is written.
    handshakes: Arc<Semaphore>,
}

impl Security {
    /// Loads the password file, the ACL file and the token key (created in `data_dir` when
    /// missing).
    ///
    /// # Errors
    /// Which file is bad and why (with the line).
    pub fn new(
        config: SecurityConfig,
        limits: LimitsConfig,
        deny_subscribe: Vec<String>,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let rules = load_rules(&config, data_dir)?;
        let this = Self::with_rules(config, limits, deny_subscribe, data_dir, rules);
        Ok(this)
    }

    /// Secure defaults with no files: anonymous from loopback only, no tokens.
    #[must_use]
    pub fn defaults(deny_subscribe: Vec<String>) -> Self {
        Self::with_rules(
            SecurityConfig::default(),
            LimitsConfig::default(),
            deny_subscribe,
            None,
            Rules::default(),
        )
    }

    fn with_rules(
        config: SecurityConfig,
        limits: LimitsConfig,
        deny_subscribe: Vec<String>,
        data_dir: Option<&Path>,
        rules: Rules,
    ) -> Self {
        let handshakes = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
        let backoff = LoginBackoff::new(
            Duration::from_millis(limits.login_backoff_ms),
            Duration::from_millis(limits.login_backoff_max_ms),
        );
        Self {
            has_acl: AtomicBool::new(rules.acl.is_some()),
            rules: RwLock::new(Arc::new(rules)),
            config,
            limits,
            data_dir: data_dir.map(Path::to_owned),
            deny_subscribe: ConfigAuthorizer::new(deny_subscribe),
            warned: Mutex::default(),
            backoff,
            per_address: Arc::default(),
            handshakes,
        }
    }

    /// Re-reads the password file, the ACL file and the token revocation list. On error the
    /// rules in force stay and the error (file and line) is returned and logged.
    ///
    /// # Errors
    /// Which file is bad and why.
    pub fn reload(&self) -> anyhow::Result<()> {
        match load_rules(&self.config, self.data_dir.as_deref()) {
            Ok(rules) => {
                self.has_acl.store(rules.acl.is_some(), Ordering::Relaxed);
                *self.rules.write() = Arc::new(rules);
                tracing::info!("security rules reloaded");
                Ok(())
            }
            Err(err) => {
                tracing::error!("reload failed, keeping the previous rules: {err:#}");
                Err(err)
            }
        }
    }

    /// The rules in force.
    #[must_use]
    pub fn rules(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read())
    }

    /// The configured limits.
    #[must_use]
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// A handshake slot, or `None` when `max_handshakes` connections are still in CONNECT.
    #[must_use]
    pub fn try_handshake(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.handshakes).try_acquire_owned().ok()
    }

    /// A per-address connection slot, or `None` when `ip` has `max_connections_per_address`
    /// connections open (0: no limit).
    #[must_use]
    pub fn enter_address(&self, ip: IpAddr) -> Option<AddressGuard> {
        self.per_address
            .enter(ip, self.limits.max_connections_per_address)
    }

    /// Records a failed login from `ip`; returns how long to wait before refusing it.
    #[must_use]
    pub fn login_failed(&self, ip: IpAddr) -> Duration {
        self.backoff.failed(ip)
    }

    /// Forgets failed logins from `ip` after a successful one.
    pub fn login_succeeded(&self, ip: IpAddr) {
        self.backoff.succeeded(ip);
    }

    /// A publish rate limiter for one connection, or `None` when `publish_rate` is 0.
    #[must_use]
    pub fn publish_bucket(&self) -> Option<TokenBucket> {
        (self.limits.publish_rate > 0).then(|| {
            TokenBucket::new(
                f64::from(self.limits.publish_rate),
                f64::from(self.limits.publish_burst.max(1)),
            )
        })
    }

    /// Verifies a user's password against the password file (for the SCRAM exchange and the
    /// plain CONNECT path alike). Slow: call it on the blocking pool.
    #[must_use]
    pub fn verify_password(&self, user: &str, password: &[u8]) -> bool {
        self.rules()
            .users
            .as_ref()
            .is_some_and(|users| users.verify(user, password))
    }

    /// Logs, once per source address, why an anonymous client was refused.
    fn warn_anonymous(&self, peer: SocketAddr, users_configured: bool) {
        let mut warned = self.warned.lock();
        if warned.len() >= WARNED_MAX {
            warned.clear();
        }
        if !warned.insert(peer.ip()) {
            return;
        }
        drop(warned);
        if users_configured {
            tracing::warn!(
                client = %peer.ip(),
                "anonymous client refused: connect with a user from the password file or a token, or set [security] allow_anonymous = true"
            );
        } else {
            tracing::warn!(
                client = %peer.ip(),
                "anonymous client refused: without users only loopback clients may connect anonymously. Add users with `switchboard passwd FILE add USER` and `--password-file FILE` ([security] password_file), or allow anonymous clients with `--allow-anonymous` ([security] allow_anonymous = true)"
            );
        }
    }
}

fn load_rules(config: &SecurityConfig, data_dir: Option<&Path>) -> anyhow::Result<Rules> {
    use anyhow::Context as _;
    let users = config
        .password_file
        .as_deref()
        .map(|path| {
            PasswordFile::load(path).with_context(|| format!("password file {}", path.display()))
        })
        .transpose()?;
    let acl = config
        .acl_file
        .as_deref()
        .map(|path| Acl::load(path).with_context(|| format!("ACL file {}", path.display())))
        .transpose()?;
    let tokens = data_dir
        .map(|dir| TokenKeys::open(dir).with_context(|| format!("token key in {}", dir.display())))
        .transpose()?;
    Ok(Rules { users, acl, tokens })
}

/// `https://Example.org/` and `https://example.org` are the same origin.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Authenticator for Security {
    fn authenticate(&self, info: &ConnectInfo<'_>) -> Result<Identity, ReasonCode> {
        let rules = self.rules();
        let password_token = info
            .password
            .and_then(|p| std::str::from_utf8(p).ok())
            .filter(|p| p.starts_with(token::PREFIX));
        if let Some(presented) = info.url_token.or(password_token) {
            let Some(keys) = &rules.tokens else {
                return Err(ReasonCode::BadUserNameOrPassword);
            };
            let claims = keys.verify(presented, token::unix_now()).map_err(|err| {
                tracing::info!(client = %info.peer, "token refused: {err}");
                match err {
                    TokenError::Invalid => ReasonCode::BadUserNameOrPassword,
                    _ => ReasonCode::NotAuthorized,
                }
            })?;
            if let Some(bound) = &claims.origin {
                let websocket = matches!(
                    info.transport,
                    Transport::WebSocket | Transport::WebSocketTls
                );
                let same = info
                    .origin
                    .is_some_and(|o| normalize_origin(o) == normalize_origin(bound));
                if !websocket || !same {
                    tracing::info!(client = %info.peer, token = %claims.name, "token refused: {}", TokenError::Origin);
                    return Err(ReasonCode::NotAuthorized);
                }
            }
            return Ok(Identity::Token(Arc::new(claims)));
        }
        let users = rules.users.as_ref().filter(|u| !u.is_empty());
        if let (Some(user), Some(users)) = (info.username, users) {
            let ok = info.password.is_some_and(|p| users.verify(user, p));
            if ok {
                return Ok(Identity::User(user.to_owned()));
            }
            tracing::info!(client = %info.peer, user, "wrong user name or password");
            return Err(ReasonCode::BadUserNameOrPassword);
        }
        let loopback = info.peer.ip().to_canonical().is_loopback();
        if self.config.allow_anonymous || (users.is_none() && loopback) {
            return Ok(Identity::Anonymous);
        }
        self.warn_anonymous(info.peer, users.is_some());
        Err(ReasonCode::NotAuthorized)
    }
}

fn strip_share(filter: &str) -> &str {
    match switchboard_mqtt::topic::parse_shared(filter) {
        Ok(Some(shared)) => shared.filter,
        _ => filter,
    }
}

impl Authorizer for Security {
    fn may_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        if !self.deny_subscribe.may_subscribe(client, filter) {
            return false;
        }
        let plain = strip_share(filter);
        match client.identity {
            Identity::Token(claims) => claims.subscribe.iter().any(|f| topics::covers(f, plain)),
            identity => match &self.rules().acl {
                None => true,
                Some(acl) => acl.allows_subscribe(identity.acl_user(), client.client_id, plain),
            },
        }
    }

    fn may_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        match client.identity {
            Identity::Token(claims) => claims.publish.iter().any(|f| topics::matches(f, topic)),
            identity => match &self.rules().acl {
                None => true,
                Some(acl) => {
                    acl.allows_topic(identity.acl_user(), client.client_id, topic, Want::Write)
                }
            },
        }
    }

    fn may_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        match client.identity {
            Identity::Token(claims) => claims.subscribe.iter().any(|f| topics::matches(f, topic)),
            identity => {
                if !self.has_acl.load(Ordering::Relaxed) {
                    return true;
                }
                match &self.rules().acl {
                    None => true,
                    Some(acl) => {
                        acl.allows_topic(identity.acl_user(), client.client_id, topic, Want::Read)
                    }
                }
            }
        }
    }
}

/// Reloads `security` on every `SIGHUP` until `shutdown` (open connections stay; a failed
/// reload keeps the rules in force and logs the file and line).
pub async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    security: Arc<Security>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hangup.recv() => if got.is_none() { return },
        }
        let security = Arc::clone(&security);
        // File reads and parsing off the reactor.
        let _ = tokio::task::spawn_blocking(move || security.reload()).await;
    }
}

/// Writes `data` to `path` through a temporary file and a rename, mode 0600 on Unix.
///
/// # Errors
/// The I/O error.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: &str) -> ConnectInfo<'static> {
        ConnectInfo {
            client_id: "c",
            username: None,
            password: None,
            peer: peer.parse().unwrap(),
            transport: Transport::Tcp,
            origin: None,
            url_token: None,
        }
    }

    #[test]
    fn anonymous_policy() {
        let sec = Security::defaults(Vec::new());
        assert_eq!(
            sec.authenticate(&info("127.0.0.1:1")),
            Ok(Identity::Anonymous)
        );
        assert_eq!(sec.authenticate(&info("[::1]:1")), Ok(Identity::Anonymous));
        assert_eq!(
            sec.authenticate(&info("[::ffff:127.0.0.1]:1")),
            Ok(Identity::Anonymous)
        );
        assert_eq!(
            sec.authenticate(&info("192.168.1.5:1")),
            Err(ReasonCode::NotAuthorized)
        );
        let open = Security::with_rules(
            SecurityConfig {
                allow_anonymous: true,
                ..SecurityConfig::default()
            },
            LimitsConfig::default(),
            Vec::new(),
            None,
            Rules::default(),
        );
        assert_eq!(
            open.authenticate(&info("192.168.1.5:1")),
            Ok(Identity::Anonymous)
        );
        // With users configured, anonymous is refused even from loopback.
        let mut users = PasswordFile::default();
        users.set(
            "u",
            PasswordHash::parse("$6$zlzhxvLVJg4DMQnj$Rfm/VBPqj8E9dptR5C8fUl1FBm9BSF5/W9XnEG2S+t87FJDEmoHJ5HxQo8/APA3SHRZ/4Zf8IhacJYepp+ZEDQ==").unwrap(),
        );
        let with_users = Security::with_rules(
            SecurityConfig::default(),
            LimitsConfig::default(),
            Vec::new(),
            None,
            Rules {
                users: Some(users),
                ..Rules::default()
            },
        );
        assert_eq!(
            with_users.authenticate(&info("127.0.0.1:1")),
            Err(ReasonCode::NotAuthorized)
        );
        let mut login = info("10.0.0.1:1");
        login.username = Some("u");
        login.password = Some(b"pw2");
        assert_eq!(
            with_users.authenticate(&login),
            Ok(Identity::User("u".into()))
        );
        login.password = Some(b"pw3");
        assert_eq!(
            with_users.authenticate(&login),
            Err(ReasonCode::BadUserNameOrPassword)
        );
    }
}
