//! The seam between one connection and everything it shares with other connections.
//!
//! A connection ([`super::conn::ServerConn`]) speaks the protocol with one client; whatever
//! outlives it or crosses to other clients goes through a [`Router`]: attaching to a session,
//! the subscription index, routing a publication (one entrance, durable or volatile), retained
//! messages, and the durable record of a session's acknowledgements with the tickets that say
//! when a change is committed. The single-node router is [`super::Broker`] (subscription trie,
//! session registry, redb or in-memory store); a cluster router can stand behind the same trait
//! without the connection code changing.
//!
//! Every method but [`Router::attach`] and [`Router::committed`] is synchronous and quick: it
//! takes short locks and never waits, so a connection may call it while handling input.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use switchboard_mqtt::{ByteString, PacketId, SubscriptionOptions};

use super::session::{Delivery, Kick, Message, Session};
use super::store::Ticket;

/// A boxed future borrowing the router.
pub(crate) type RouterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether a publication's retained copy must survive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The retained copy is committed to the store (client publications, wills, `$SYS`).
    Durable,
    /// The retained copy is kept in memory only: state the gateway derives again after a
    /// restart (the device channel). Deliveries to durable sessions are recorded either way.
    Volatile,
}

/// What routing one publication did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Published {
    /// Sessions it was delivered to.
    pub(crate) routed: usize,
    /// Highest store ticket to await before acknowledging it (0: none).
    pub(crate) ticket: Ticket,
    /// The store refused a durable copy (size cap): some copy is missing.
    pub(crate) rejected: bool,
}

/// A session attached to a new connection.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) session: Arc<Session>,
    pub(crate) session_present: bool,
    /// Distinguishes successive connections of one session.
    pub(crate) generation: u64,
    /// Makes the connection leave (takeover, HTTP API, revoked login).
    pub(crate) kick: Kick,
    /// The store's ticket for the session's opening (awaited before CONNACK is written).
    pub(crate) ticket: Ticket,
}

/// A subscription added by [`Router::subscribe`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subscribed {
    /// It replaced a subscription of this session with the same filter.
    pub(crate) replaced: bool,
    /// Store ticket of the durable record (0: none).
    pub(crate) ticket: Ticket,
}

/// A change of a durable session's delivery state, recorded by [`Router::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The queued delivery `id` was sent with packet identifier `pid` (QoS 2).
    Sent { id: u64, pid: PacketId },
    /// The QoS 2 delivery `id` got its PUBREC: PUBREL `pid` is pending.
    Released { id: u64, pid: PacketId },
    /// The delivery `id` was completed or dropped.
    Acked { id: u64 },
    /// An incoming QoS 2 PUBLISH was accepted.
    Qos2Received(PacketId),
    /// PUBREL of an incoming QoS 2 PUBLISH arrived.
    Qos2Released(PacketId),
}

/// Everything a connection shares with other connections. See the module documentation.
pub(crate) trait Router: Send + Sync + fmt::Debug {
    /// A fresh client identifier for a client that sent an empty one.
    fn assign_client_id(&self) -> ByteString;

    /// Attaches a new connection to the session of `client_id`: takes over a live one (the old
    /// connection is told to leave and waited for), resumes a stored one unless `clean_start`,
    /// or creates one. `expiry` is the session expiry interval in force (seconds). The will
    /// (and its delay) is recorded so that it is published even if the process dies.
    fn attach<'a>(
        &'a self,
        client_id: &'a ByteString,
        clean_start: bool,
        expiry: u32,
        will: Option<&'a (Message, u32)>,
    ) -> RouterFuture<'a, Attached>;

    /// Detaches a closing connection (`generation`), publishing `will` now or after its delay
    /// (seconds); ends the session or arms its expiry.
    fn detach(&self, session: &Arc<Session>, generation: u64, will: Option<(Message, u32)>);

    /// Adds (or replaces) a subscription of `session`, effective at once, and records it for a
    /// durable session.
    fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &ByteString,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Subscribed;

    /// Removes a subscription; `None` when the session had none with this filter.
    fn unsubscribe(&self, session: &Arc<Session>, filter: &ByteString) -> Option<Ticket>;

    /// The one entrance for a publication: replaces (or, when empty, deletes) the retained
    /// message if `msg.retain`, then delivers it to every matching session.
    fn publish(&self, msg: Arc<Message>, durability: Durability) -> Published;

    /// Retained messages matching `filter`.
    fn retained(&self, filter: &str) -> Vec<Arc<Message>>;

    /// Puts one delivery into `session`'s queue (retained messages at SUBSCRIBE).
    fn deliver(&self, session: &Session, delivery: Delivery) -> Ticket;

    /// Records a change of a durable session's delivery state.
    fn record(&self, client_id: &str, change: Change) -> Ticket;

    /// Completes once every change up to `ticket` is committed.
    fn committed(&self, ticket: Ticket) -> RouterFuture<'_, ()>;

    /// Whether a change with a ticket in `from..=to` was lost (its commit failed); asked once
    /// [`Router::committed`] resolved for `to`.
    fn lost(&self, from: Ticket, to: Ticket) -> bool;
}
