//! The persistence seam. The broker keeps its live state in memory (the registry, the trie,
//! each session's queue); a [`Store`] is told about every change that must survive a restart so
//! a durable implementation ([`super::persist::RedbStore`]) can record it. [`MemoryStore`]
//! records nothing: state lives exactly as long as the process.
//!
//! The broker calls the session hooks only for sessions that outlive their connection (session
//! expiry interval above 0), so clean sessions never reach the store. Hooks are called with the
//! session's lock held where ordering matters (a delivery is recorded before its acknowledgement
//! can be), so they must not block: a durable store queues the change and commits it on its own
//! thread.
//!
//! Every hook returns a [`Ticket`]: the connection that caused the change awaits
//! [`Store::committed`] for its highest ticket before it writes the acknowledgement (PUBACK,
//! PUBREC, PUBCOMP) or the PUBLISH whose packet identifier was just recorded. Ticket 0 means
//! nothing to wait for (the in-memory store, and the `batch` durability mode).

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use switchboard_mqtt::{ByteString, PacketId, QoS, SubscriptionOptions};

use super::session::Message;

/// A position in the store's commit sequence; 0 is "nothing to wait for".
pub type Ticket = u64;

/// Called by a store with the duration of each commit.
pub type CommitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// Why a store refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store reached its configured size cap (`[store] max_bytes`).
    #[error("the store is full")]
    Full,
}

/// Receives every durable change of broker state. All methods default to doing nothing.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A retained message was set or replaced on `msg.topic`.
    ///
    /// # Errors
    /// [`StoreError::Full`] when the store is over its size cap (nothing was recorded).
    fn retained_set(&self, msg: &Message) -> Result<Ticket, StoreError> {
        let _ = msg;
        Ok(0)
    }
    /// The retained message on `topic` was deleted (empty payload).
    fn retained_deleted(&self, topic: &str) -> Ticket {
        let _ = topic;
        0
    }
    /// A session that outlives its connection was created or resumed and is now attached, with
    /// its expiry interval in seconds (`u32::MAX`: never). `clean` when it starts empty (any
    /// earlier state of this client id is forgotten).
    fn session_opened(&self, client_id: &str, expiry_interval: u32, clean: bool) -> Ticket {
        let _ = (client_id, expiry_interval, clean);
        0
    }
    /// A durable session lost its connection: it expires `expiry_interval` seconds from now
    /// (`u32::MAX`: never).
    fn session_detached(&self, client_id: &str, expiry_interval: u32) -> Ticket {
        let _ = (client_id, expiry_interval);
        0
    }
    /// A session ended (clean start, expiry, or expiry interval 0 at disconnect).
    fn session_ended(&self, client_id: &str) -> Ticket {
        let _ = client_id;
        0
    }
    /// A subscription was added or replaced.
    fn subscribed(
        &self,
        client_id: &str,
        filter: &str,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Ticket {
        let _ = (client_id, filter, options, id);
        0
    }
    /// A subscription was removed.
    fn unsubscribed(&self, client_id: &str, filter: &str) -> Ticket {
        let _ = (client_id, filter);
        0
    }
    /// A QoS 1/2 message was queued for a durable session. `id` is the store's key of this
    /// delivery ([`Store::next_id`]), used by the later hooks.
    ///
    /// # Errors
    /// [`StoreError::Full`] when the store is over its size cap (nothing was recorded).
    fn message_queued(
        &self,
        client_id: &str,
        id: u64,
        msg: &QueuedMessage<'_>,
    ) -> Result<Ticket, StoreError> {
        let _ = (client_id, id, msg);
        Ok(0)
    }
    /// The queued delivery `id` was sent with packet identifier `pid`.
    fn message_sent(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        let _ = (client_id, id, pid);
        0
    }
    /// The QoS 2 delivery `id` got its PUBREC: PUBREL `pid` is pending.
    fn message_released(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        let _ = (client_id, id, pid);
        0
    }
    /// The delivery `id` was completed (PUBACK, PUBCOMP, or an error PUBREC) or dropped.
    fn message_acked(&self, client_id: &str, id: u64) -> Ticket {
        let _ = (client_id, id);
        0
    }
    /// An incoming QoS 2 PUBLISH `pid` was accepted: a duplicate of it must not be forwarded
    /// again until its PUBREL.
    fn qos2_received(&self, client_id: &str, pid: PacketId) -> Ticket {
        let _ = (client_id, pid);
        0
    }
    /// PUBREL for the incoming QoS 2 message `pid` arrived.
    fn qos2_released(&self, client_id: &str, pid: PacketId) -> Ticket {
        let _ = (client_id, pid);
        0
    }
    /// A will waits for its delay, to be published at `at`.
    fn will_delayed(&self, client_id: &str, will: &Message, at: SystemTime) -> Ticket {
        let _ = (client_id, will, at);
        0
    }
    /// A connection with a will is up: should the process die, the will is published after
    /// `delay` seconds from the restart ([`Restored::wills`], or the session's will).
    fn will_armed(&self, client_id: &str, will: &Message, delay: u32) -> Ticket {
        let _ = (client_id, will, delay);
        0
    }
    /// The delayed will of `client_id` was published or withdrawn.
    fn will_cleared(&self, client_id: &str) -> Ticket {
        let _ = client_id;
        0
    }
    /// A fresh key for [`Store::message_queued`] (0 for stores that record nothing).
    fn next_id(&self) -> u64 {
        0
    }
    /// Resolves once every change up to `ticket` is committed (at once for ticket 0, and once
    /// the store is closed).
    fn committed(&self, ticket: Ticket) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let _ = ticket;
        Box::pin(std::future::ready(()))
    }
    /// Whether a change with a ticket in `from..=to` was lost: its commit failed (disk full, I/O
    /// error). Asked once [`Store::committed`] resolved for `to`; an acknowledgement that
    /// depends on such a change must not be sent. Stores without commits lose nothing.
    fn lost(&self, from: Ticket, to: Ticket) -> bool {
        let _ = (from, to);
        false
    }
    /// Installs a callback the store calls with the duration of each commit (for the
    /// `store_commit` latency histogram). Stores without commits ignore it.
    fn on_commit(&self, observe: CommitObserver) {
        let _ = observe;
    }
    /// Takes the state read from disk at open (once; later calls give nothing).
    fn take_restored(&self) -> Restored {
        Restored::default()
    }
    /// Commits what is pending and closes the file (the broker is stopping). Later changes are
    /// ignored.
    fn close(&self) {}
}

/// A QoS 1/2 delivery to a durable session, as the store records it.
#[derive(Debug, Clone, Copy)]
pub struct QueuedMessage<'a> {
    /// The message.
    pub msg: &'a Message,
    /// QoS of this delivery: min(published, granted).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers to send.
    pub sub_ids: &'a [u32],
}

/// State read back from a durable store when the broker starts.
#[derive(Debug, Default)]
pub struct Restored {
    /// Retained messages (expired ones already left out).
    pub retained: Vec<Message>,
    /// Sessions, in no particular order.
    pub sessions: Vec<RestoredSession>,
    /// Wills of connections that were up when the process died and have no session in the
    /// store (clean sessions): client id and message, published at once after the restore.
    pub wills: Vec<(ByteString, Message)>,
}

/// A durable session read back from the store.
#[derive(Debug)]
pub struct RestoredSession {
    /// Client identifier.
    pub client_id: ByteString,
    /// Session expiry interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the session expires; `None` when it was attached at shutdown or crash (it then
    /// expires `expiry_interval` after this start) or never expires.
    pub expires_at: Option<SystemTime>,
    /// Subscriptions: filter as sent, options, subscription identifier.
    pub subscriptions: Vec<(ByteString, SubscriptionOptions, Option<u32>)>,
    /// Deliveries in queue order (oldest first).
    pub messages: Vec<RestoredDelivery>,
    /// Incoming QoS 2 packet identifiers awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
    /// A delayed will (or the will of a connection that was up at a crash) and when it is due.
    pub will: Option<(Message, SystemTime)>,
}

/// A QoS 1/2 delivery read back from the store.
#[derive(Debug)]
pub struct RestoredDelivery {
    /// Store key.
    pub id: u64,
    /// The message.
    pub msg: Message,
    /// QoS of the delivery.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers.
    pub sub_ids: Vec<u32>,
    /// The packet identifier it was sent with (`None`: still queued) and whether its PUBREL
    /// is pending (QoS 2 after PUBREC).
    pub sent: Option<(PacketId, bool)>,
}

/// The in-memory store: the broker's own memory is the only copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl Store for MemoryStore {}
