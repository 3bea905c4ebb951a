//! Users, ACLs, scoped tokens, the anonymous policy and abuse limits.
//!
//! Where it sits in the flow: a connection task asks [`Security`] for a handshake slot and a
//! per-address slot as soon as it starts, then calls [`Authenticator::authenticate`] (on the
//! blocking pool: password hashes are slow) with the CONNECT's credentials, the resolved client
//! address and, for WebSockets, the `Origin` header and `?token=`. The [`Login`] it returns (an
//! [`Identity`] and what proved it) travels with the connection; every subscribe, publish and
//! delivery is then decided by [`Security`]'s [`Authorizer`] implementation (token scope, else
//! the ACL file, plus the `[broker] deny_subscribe` list).
//!
//! Rules (password file, ACL file, token key and revocations) live in one immutable [`Rules`]
//! value behind a lock that is only held to clone an `Arc`; `SIGHUP` builds a new one and swaps
//! it in ([`Security::reload`]), so open connections keep running under the new rules: ACL
//! changes apply from their next subscribe, publish or delivery. Then the broker re-checks every
//! open connection's [`Login`] against the new rules ([`Security::recheck`]) and disconnects
//! those no longer valid (a revoked token, a removed user, a changed password; see
//! [`Revoked`]). A reload error keeps the old rules.

pub mod acl;
mod authorize;
pub mod limits;
pub mod passwd;
mod settings;
pub mod token;
pub mod topics;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use switchboard_mqtt::ReasonCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::acl::{Acl, Want};
pub use self::authorize::{Authorizer, ClientInfo, ConfigAuthorizer, Transport};
pub use self::limits::{AddressGuard, HashGate, HashTurn, LoginBackoff, TokenBucket};
pub use self::passwd::{PasswordFile, PasswordHash};
pub use self::settings::{LimitsConfig, SecurityConfig};
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

/// An [`Identity`] together with what proved it, so that it can be re-checked when the rules
/// change ([`Security::recheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Who the connection is.
    identity: Identity,
    /// What proved it.
    basis: Basis,
}

/// What a [`Login`] rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Basis {
    /// No credentials; whether the client address is loopback (the anonymous policy depends on
    /// it).
    Anonymous { loopback: bool },
    /// A password verified against this hash from the password file.
    Password(PasswordHash),
    /// Proven outside the password file by a verified TLS client certificate: not re-checked
    /// against it.
    Proven,
    /// Proven by a SCRAM-SHA-256 exchange against this credential: re-checked against the SCRAM
    /// credential file when it is reloaded ([`Login::scram_revoked`]).
    Scram(Box<crate::scram::Credential>),
    /// A token, verified with the key of this fingerprint.
    Token { key: [u8; 32] },
}

impl Login {
    /// A user proven before CONNECT's password is looked at: by the SCRAM exchange or by a
    /// verified TLS client certificate. The password file does not govern it, so a reload
    /// never revokes it.
    #[must_use]
    pub fn proven(user: impl Into<String>) -> Self {
        Self {
            identity: Identity::User(user.into()),
            basis: Basis::Proven,
        }
    }

    /// A user proven by a SCRAM-SHA-256 exchange against `credential`.
    #[must_use]
    pub fn scram(user: impl Into<String>, credential: crate::scram::Credential) -> Self {
        Self {
            identity: Identity::User(user.into()),
            basis: Basis::Scram(Box::new(credential)),
        }
    }

    /// Who the connection is.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Why a SCRAM login is no longer valid under `credentials` (the user was removed or its
    /// password changed); `None` for a valid one and for logins of every other kind.
    #[must_use]
    pub fn scram_revoked(
        &self,
        credentials: Option<&crate::scram::Credentials>,
    ) -> Option<Revoked> {
        let Basis::Scram(proven) = &self.basis else {
            return None;
        };
        let user = self.identity.acl_user()?;
        match credentials.and_then(|c| c.get(user)) {
            None => Some(Revoked::UserRemoved),
            Some(current) if current != proven.as_ref() => Some(Revoked::PasswordChanged),
            Some(_) => None,
        }
    }
}

/// Why a login that was valid at CONNECT is not any more; the broker then disconnects the
/// client (MQTT 5: DISCONNECT 0x87 Not authorized) and logs this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    /// The token's id is on the revocation list.
    #[error("token revoked")]
    TokenRevoked,
    /// The token is past its expiry.
    #[error("token expired")]
    TokenExpired,
    /// The token key was replaced: tokens signed with the old one are invalid.
    #[error("token key changed")]
    TokenKeyChanged,
    /// The user is no longer in the password file.
    #[error("user removed")]
    UserRemoved,
    /// The user's password hash in the password file changed.
    #[error("password changed")]
    PasswordChanged,
    /// Anonymous clients are no longer accepted from this address (users were added).
    #[error("anonymous clients not allowed")]
    AnonymousRefused,
}

/// Re-checks logins against the rules in force when it was made ([`Security::recheck`]).
#[derive(Debug)]
pub struct Recheck {
    rules: Arc<Rules>,
    allow_anonymous: bool,
    now: u64,
}

impl Recheck {
    /// Whether `login` is still valid; why not otherwise. No password is verified again: a
    /// password login stays valid while its user's hash is unchanged.
    ///
    /// # Errors
    /// Why the login is no longer valid.
    pub fn login(&self, login: &Login) -> Result<(), Revoked> {
        match (&login.basis, &login.identity) {
            (Basis::Proven | Basis::Scram(_), _) => Ok(()),
            (Basis::Anonymous { loopback }, _) => {
                let users = self.rules.users.as_ref().filter(|u| !u.is_empty());
                if self.allow_anonymous || (users.is_none() && *loopback) {
                    Ok(())
                } else {
                    Err(Revoked::AnonymousRefused)
                }
            }
            (Basis::Password(hash), identity) => {
                let stored = identity
                    .acl_user()
                    .and_then(|user| self.rules.users.as_ref()?.get(user));
                match stored {
                    None => Err(Revoked::UserRemoved),
                    Some(stored) if stored != hash => Err(Revoked::PasswordChanged),
                    Some(_) => Ok(()),
                }
            }
            (Basis::Token { key }, Identity::Token(claims)) => {
                let Some(keys) = &self.rules.tokens else {
                    return Err(Revoked::TokenKeyChanged);
                };
                if keys.fingerprint() != *key {
                    Err(Revoked::TokenKeyChanged)
                } else if keys.is_revoked(&claims.id) {
                    Err(Revoked::TokenRevoked)
                } else if claims.expired_at(self.now) {
                    Err(Revoked::TokenExpired)
                } else {
                    Ok(())
                }
            }
            // A token basis always comes with a token identity (built only by `authenticate`).
            (Basis::Token { .. }, _) => Err(Revoked::TokenRevoked),
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

/// A connection's place among those still in CONNECT; dropping it frees the place.
#[derive(Debug)]
pub struct Handshake {
    _address: AddressGuard,
    _permit: OwnedSemaphorePermit,
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
    /// The login (identity and what proved it) for a CONNECT, or the CONNACK reason code
    /// refusing it:
    /// `BadUserNameOrPassword` (0x86, 3.1.1 return code 4) for wrong credentials,
    /// `NotAuthorized` (0x87, return code 5) for a refused anonymous client or a token that is
    /// expired, revoked or bound to another origin.
    ///
    /// May be slow (password hashing): call it on the blocking pool.
    ///
    /// # Errors
    /// The reason code for the CONNACK.
    fn authenticate(&self, info: &ConnectInfo<'_>) -> Result<Login, ReasonCode>;
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
    /// Failed logins per source address and user name.
    backoff: LoginBackoff,
    /// Turns for password checks: few at once, one per source address.
    hash_gate: Arc<HashGate>,
    /// Topic filters only the gateway itself publishes to ([`Security::reserve`]).
    reserved: Vec<String>,
    /// Open connections per source address.
    per_address: Arc<limits::AddressCounts>,
    /// Connections that have not finished CONNECT; a permit lives in the connection task until
    /// its CONNACK is written.
    handshakes: Arc<Semaphore>,
    /// Connections in CONNECT per source address.
    handshakes_per_address: Arc<limits::AddressCounts>,
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
        let hash_gate = Arc::new(HashGate::new(limits.password_checks));
        Self {
            has_acl: AtomicBool::new(rules.acl.is_some()),
            rules: RwLock::new(Arc::new(rules)),
            config,
            limits,
            data_dir: data_dir.map(Path::to_owned),
            deny_subscribe: ConfigAuthorizer::new(deny_subscribe),
            warned: Mutex::default(),
            backoff,
            hash_gate,
            reserved: Vec::new(),
            per_address: Arc::default(),
            handshakes,
            handshakes_per_address: Arc::default(),
        }
    }

    /// Re-reads the password file, the ACL file and the token revocation list. On error the
    /// rules in force stay and the error (file and line) is returned and logged.
    ///
    /// This only swaps the rules: open connections whose login the new rules reject are cut
    /// by the broker (its `reload_security` does both).
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

    /// A re-check of logins against the rules in force now (see [`Recheck::login`]).
    #[must_use]
    pub fn recheck(&self) -> Recheck {
        Recheck {
            rules: self.rules(),
            allow_anonymous: self.config.allow_anonymous,
            now: token::unix_now(),
        }
    }

    /// Reserves `filters` for the gateway: no client may publish to a topic they match, whatever
    /// the ACL or token says (the gateway's own publications do not pass through here).
    #[must_use]
    pub fn reserve(mut self, filters: impl IntoIterator<Item = String>) -> Self {
        self.reserved.extend(filters);
        self
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

    /// A handshake slot for a connection from `ip`, or `None` when `max_handshakes`
    /// connections are still in CONNECT, or three quarters of them from `ip` already: the
    /// per-address share is taken first, so one address cannot hold every slot while clients
    /// from elsewhere are turned away.
    #[must_use]
    pub fn try_handshake(&self, ip: IpAddr) -> Option<Handshake> {
        let max = self.limits.max_handshakes.max(1);
        let share = (max - max / 4).max(1);
        let address = self.handshakes_per_address.enter(ip, share)?;
        let permit = Arc::clone(&self.handshakes).try_acquire_owned().ok()?;
        Some(Handshake {
            _address: address,
            _permit: permit,
        })
    }

    /// A per-address connection slot, or `None` when `ip` has `max_connections_per_address`
    /// connections open (0: no limit).
    #[must_use]
    pub fn enter_address(&self, ip: IpAddr) -> Option<AddressGuard> {
        self.per_address
            .enter(ip, self.limits.max_connections_per_address)
    }

    /// How long a login of `user` from `ip` must wait, after its earlier failures, before
    /// it is checked.
    #[must_use]
    pub fn login_wait(&self, ip: IpAddr, user: Option<&str>) -> Duration {
        self.backoff.wait(ip, user, Instant::now())
    }

    /// Records a failed login of `user` from `ip`; returns how long its next attempt waits.
    pub fn login_failed(&self, ip: IpAddr, user: Option<&str>) -> Duration {
        self.backoff.failed(ip, user, Instant::now())
    }

    /// Forgets the failed logins of `user` from `ip` after a successful one (other users'
    /// failures from the same address stay).
    pub fn login_succeeded(&self, ip: IpAddr, user: Option<&str>) {
        self.backoff.succeeded(ip, user);
    }

    /// The turns for password checks (`[limits] password_checks` at once, one per address).
    #[must_use]
    pub fn hash_gate(&self) -> &Arc<HashGate> {
        &self.hash_gate
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
    fn authenticate(&self, info: &ConnectInfo<'_>) -> Result<Login, ReasonCode> {
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
            return Ok(Login {
                identity: Identity::Token(Arc::new(claims)),
                basis: Basis::Token {
                    key: keys.fingerprint(),
                },
            });
        }
        let users = rules.users.as_ref().filter(|u| !u.is_empty());
        if let (Some(user), Some(users)) = (info.username, users) {
            let ok = info.password.is_some_and(|p| users.verify(user, p));
            if let (true, Some(hash)) = (ok, users.get(user)) {
                return Ok(Login {
                    identity: Identity::User(user.to_owned()),
                    basis: Basis::Password(hash.clone()),
                });
            }
            tracing::info!(client = %info.peer, user, "wrong user name or password");
            return Err(ReasonCode::BadUserNameOrPassword);
        }
        let loopback = info.peer.ip().to_canonical().is_loopback();
        if self.config.allow_anonymous || (users.is_none() && loopback) {
            return Ok(Login {
                identity: Identity::Anonymous,
                basis: Basis::Anonymous { loopback },
            });
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
        if self.reserved.iter().any(|f| topics::matches(f, topic)) {
            return false;
        }
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

    /// The identity `sec` gives a client.
    fn who(sec: &Security, info: &ConnectInfo<'_>) -> Result<Identity, ReasonCode> {
        sec.authenticate(info).map(|login| login.identity().clone())
    }

    #[test]
    fn anonymous_policy() {
        let sec = Security::defaults(Vec::new());
        assert_eq!(who(&sec, &info("127.0.0.1:1")), Ok(Identity::Anonymous));
        assert_eq!(who(&sec, &info("[::1]:1")), Ok(Identity::Anonymous));
        assert_eq!(
            who(&sec, &info("[::ffff:127.0.0.1]:1")),
            Ok(Identity::Anonymous)
        );
        assert_eq!(
            who(&sec, &info("192.168.1.5:1")),
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
        assert_eq!(who(&open, &info("192.168.1.5:1")), Ok(Identity::Anonymous));
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
            who(&with_users, &info("127.0.0.1:1")),
            Err(ReasonCode::NotAuthorized)
        );
        let mut login = info("10.0.0.1:1");
        login.username = Some("u");
        login.password = Some(b"pw2");
        assert_eq!(who(&with_users, &login), Ok(Identity::User("u".into())));
        login.password = Some(b"pw3");
        assert_eq!(
            who(&with_users, &login),
            Err(ReasonCode::BadUserNameOrPassword)
        );
    }

    /// The `$6$` hash of `pw2`.
    const PW2: &str = "$6$zlzhxvLVJg4DMQnj$Rfm/VBPqj8E9dptR5C8fUl1FBm9BSF5/W9XnEG2S+t87FJDEmoHJ5HxQo8/APA3SHRZ/4Zf8IhacJYepp+ZEDQ==";

    fn users(list: &[(&str, &str)]) -> PasswordFile {
        let mut file = PasswordFile::default();
        for (user, hash) in list {
            file.set(user, PasswordHash::parse(hash).unwrap());
        }
        file
    }

    /// What a reload does to open logins: a removed user, a changed password, a revoked
    /// token, a replaced token key and an anonymous policy that now refuses are all reported;
    /// unchanged users, other tokens and proven users stay valid.
    #[test]
    fn recheck_after_reload() {
        let dir = tempfile::tempdir().unwrap();
        let other = PasswordHash::argon2(b"new").unwrap();
        let sec = Security::with_rules(
            SecurityConfig::default(),
            LimitsConfig::default(),
            Vec::new(),
            Some(dir.path()),
            Rules {
                users: Some(users(&[("u", PW2), ("v", PW2), ("w", PW2)])),
                tokens: Some(TokenKeys::open(dir.path()).unwrap()),
                ..Rules::default()
            },
        );
        let login = |user: &str| {
            let mut i = info("10.0.0.1:1");
            i.username = Some(user);
            i.password = Some(b"pw2");
            sec.authenticate(&i).unwrap()
        };
        let (u, v, w) = (login("u"), login("v"), login("w"));
        let claims = |name: &str| Claims {
            id: String::new(),
            name: name.into(),
            publish: vec![],
            subscribe: vec!["#".into()],
            expires: None,
            origin: None,
            issued: 0,
        };
        let token_login = |name: &str| {
            let (_, text) = token::create(dir.path(), claims(name)).unwrap();
            let mut i = info("10.0.0.1:1");
            i.password = Some(text.as_bytes());
            sec.authenticate(&i).unwrap()
        };
        let (t1, t2) = (token_login("t1"), token_login("t2"));
        let proven = Login::proven("u");
        let check = sec.recheck();
        for login in [&u, &v, &w, &t1, &t2, &proven] {
            assert_eq!(check.login(login), Ok(()), "{login:?}");
        }

        // The password file without `v` and with a new password for `w`; `t1` revoked.
        token::revoke(dir.path(), "t1").unwrap();
        *sec.rules.write() = Arc::new(Rules {
            users: Some(users(&[("u", PW2), ("w", &other.to_text())])),
            tokens: Some(TokenKeys::open(dir.path()).unwrap()),
            ..Rules::default()
        });
        let check = sec.recheck();
        assert_eq!(check.login(&u), Ok(()));
        assert_eq!(check.login(&v), Err(Revoked::UserRemoved));
        assert_eq!(check.login(&w), Err(Revoked::PasswordChanged));
        assert_eq!(check.login(&t1), Err(Revoked::TokenRevoked));
        assert_eq!(check.login(&t2), Ok(()));
        assert_eq!(check.login(&proven), Ok(()));

        // A new token key invalidates every token signed with the old one.
        let fresh = tempfile::tempdir().unwrap();
        *sec.rules.write() = Arc::new(Rules {
            tokens: Some(TokenKeys::open(fresh.path()).unwrap()),
            ..Rules::default()
        });
        assert_eq!(sec.recheck().login(&t2), Err(Revoked::TokenKeyChanged));

        // Anonymous from loopback is allowed while there are no users, not after.
        let open = Security::defaults(Vec::new());
        let anonymous = open.authenticate(&info("127.0.0.1:1")).unwrap();
        assert_eq!(open.recheck().login(&anonymous), Ok(()));
        *open.rules.write() = Arc::new(Rules {
            users: Some(users(&[("u", PW2)])),
            ..Rules::default()
        });
        assert_eq!(
            open.recheck().login(&anonymous),
            Err(Revoked::AnonymousRefused)
        );
    }
}
