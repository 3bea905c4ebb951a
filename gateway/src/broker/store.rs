//! The persistence seam. The broker keeps its live state in memory (the registry, the trie,
//! each session's queue); a [`Store`] is told about every change that must survive a restart so
//! a durable implementation (redb, in its own issue) can record it. [`MemoryStore`] records
//! nothing: state lives exactly as long as the process.
//!
//! The hooks are called outside the broker's locks where possible and must not block for long:
//! a durable store should batch writes on its own thread.

use switchboard_mqtt::{PacketId, SubscriptionOptions};

use super::session::Message;

/// Receives every durable change of broker state. All methods default to doing nothing.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A retained message was set or replaced on `msg.topic`.
    fn retained_set(&self, msg: &Message) {
        let _ = msg;
    }
    /// The retained message on `topic` was deleted (empty payload).
    fn retained_deleted(&self, topic: &str) {
        let _ = topic;
    }
    /// A session that outlives its connection was created or resumed, with its expiry interval
    /// in seconds (`u32::MAX`: never).
    fn session_opened(&self, client_id: &str, expiry_interval: u32) {
        let _ = (client_id, expiry_interval);
    }
    /// A session ended (clean start, expiry, or expiry interval 0 at disconnect).
    fn session_ended(&self, client_id: &str) {
        let _ = client_id;
    }
    /// A subscription was added or replaced.
    fn subscribed(
        &self,
        client_id: &str,
        filter: &str,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) {
        let _ = (client_id, filter, options, id);
    }
    /// A subscription was removed.
    fn unsubscribed(&self, client_id: &str, filter: &str) {
        let _ = (client_id, filter);
    }
    /// A QoS 1/2 message was handed to a session (queued or sent).
    fn message_queued(&self, client_id: &str, msg: &Message) {
        let _ = (client_id, msg);
    }
    /// The outgoing QoS 1/2 message `pid` of a session was completed (PUBACK or PUBCOMP).
    fn message_acked(&self, client_id: &str, pid: PacketId) {
        let _ = (client_id, pid);
    }
}

/// The in-memory store: the broker's own memory is the only copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl Store for MemoryStore {}
