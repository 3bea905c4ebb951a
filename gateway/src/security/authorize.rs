//! Authorization: every subscribe and publish permission decision goes through one
//! [`Authorizer`]. [`ConfigAuthorizer`] implements the `[broker] deny_subscribe` list alone;
//! [`super::Security`] adds users, ACL files and scoped tokens on top of it.

use std::net::SocketAddr;

use super::Identity;
use super::topics::matches;

/// How a client reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TCP with TLS.
    Tls,
    /// WebSocket over plain HTTP.
    WebSocket,
    /// WebSocket over HTTPS.
    WebSocketTls,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The client identifier (assigned one included).
    pub client_id: &'a str,
    /// The user name from CONNECT.
    pub username: Option<&'a str>,
    /// The peer address.
    pub peer: SocketAddr,
    /// The transport the client came in on.
    pub transport: Transport,
    /// Who the client authenticated as.
    pub identity: &'a Identity,
}

/// Decides what a client may do.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// Whether `client` may subscribe to `filter` (as sent, `$share/` prefix included).
    /// Refused: SUBACK 0x80 (v5 0x87 Not authorized).
    fn may_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool;
    /// Whether `client` may publish to `topic`. Refused: the message is dropped (v5 PUBACK /
    /// PUBREC 0x87).
    fn may_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool;
    /// Whether a message on `topic` may be delivered to `client` (checked for every delivery,
    /// retained messages included, so a wide subscription never leaks unreadable topics).
    /// Refused: the message is skipped for this client.
    fn may_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }
}

/// The configured deny list: subscriptions to filters equal to or matched by one of
/// `deny_subscribe` are refused; publishing is always allowed.
#[derive(Debug, Clone, Default)]
pub struct ConfigAuthorizer {
    deny_subscribe: Vec<String>,
}

impl ConfigAuthorizer {
    /// From the `[broker] deny_subscribe` list.
    #[must_use]
    pub fn new(deny_subscribe: Vec<String>) -> Self {
        Self { deny_subscribe }
    }
}

impl Authorizer for ConfigAuthorizer {
    fn may_subscribe(&self, _client: &ClientInfo<'_>, filter: &str) -> bool {
        !self
            .deny_subscribe
            .iter()
            .any(|deny| deny == filter || matches(deny, filter))
    }

    fn may_publish(&self, _client: &ClientInfo<'_>, _topic: &str) -> bool {
        true
    }
}
