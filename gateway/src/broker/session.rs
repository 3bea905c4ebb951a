//! Session state: what survives a connection (subscriptions, queued and in-flight messages,
//! the pending will) and the bounded queue through which the router hands messages to a
//! session.
//!
//! A [`Session`] is shared (`Arc`) by the registry, the subscription trie and at most one live
//! connection. Its mutable part sits behind a `std::sync::Mutex` that is never held across an
//! `.await`: the router locks it to push one delivery, the connection locks it to drain the
//! queue into its write buffer or to settle an acknowledgement.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use switchboard_mqtt::{ByteString, Bytes, PacketId, Properties, QoS, ReasonCode};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::security::Revoked;

/// An application message as routed: shared by every subscriber it goes to, never copied.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload (a slice of the buffer it arrived in).
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// v5 message properties passed through to subscribers (payload format, content type,
    /// response topic, correlation data, user properties). Topic alias, subscription
    /// identifiers and the expiry interval are set per delivery.
    pub properties: Properties,
    /// When the message expires (v5 Message Expiry Interval), if it does.
    pub expires_at: Option<Instant>,
    /// Key of the publishing session (0: the broker itself), for No Local.
    pub(crate) origin: u64,
}

impl Message {
    /// Whether the message has expired at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) msg: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub(crate) qos: QoS,
    /// The RETAIN flag to send.
    pub(crate) retain: bool,
    /// Subscription identifiers to attach (v5).
    pub(crate) sub_ids: Vec<u32>,
    /// Key of this delivery in the durable store (0: not stored).
    pub(crate) store_id: u64,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// An outgoing QoS 1/2 message not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct OutFlight {
    pub(crate) pid: PacketId,
    pub(crate) delivery: Delivery,
    pub(crate) stage: Stage,
}

/// Why a connection is made to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kicked {
    /// Another connection took its session over, or the HTTP API disconnected it.
    TakenOver,
    /// Its login is no longer valid under the security rules in force (after a reload).
    Revoked(Revoked),
}

impl Kicked {
    /// The reason code of the MQTT 5 DISCONNECT the connection sends before closing.
    pub(crate) fn code(self) -> ReasonCode {
        match self {
            Self::TakenOver => ReasonCode::SessionTakenOver,
            Self::Revoked(_) => ReasonCode::NotAuthorized,
        }
    }
}

/// Makes one connection leave, saying why: a cancellation token and the first reason given
/// (later ones are ignored: the connection is already leaving). Cheap to clone: the session's
/// [`ConnSlot`], the broker's table of live clients and the connection task hold clones, and it
/// lives as long as the last of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kick {
    token: CancellationToken,
    why: Arc<OnceLock<Kicked>>,
}

impl Kick {
    /// Makes the connection leave for `why` (unless it was already told to leave).
    pub(crate) fn kick(&self, why: Kicked) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// Completes once the connection is told to leave.
    pub(crate) fn kicked(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Why the connection was told to leave (`TakenOver` until told).
    pub(crate) fn why(&self) -> Kicked {
        self.why.get().copied().unwrap_or(Kicked::TakenOver)
    }
}

/// The connection currently attached to a session.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    /// Distinguishes successive connections of one session.
    pub(crate) generation: u64,
    /// Makes the connection leave (takeover, HTTP API, revoked login). The connection and the
    /// table of live clients watch clones.
    pub(crate) kick: Kick,
    /// Cancelled by the connection once it has detached and handled its will.
    pub(crate) closed: CancellationToken,
}

/// Why a delivery was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// QoS 0 to an offline session: not kept.
    Offline,
    /// The queue was full.
    QueueFull,
}

/// Queue limits of a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

/// Mutable session state. Guarded by [`Session::state`].
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// Deliveries waiting for the connection (or for a free in-flight slot).
    pub(crate) queue: VecDeque<Delivery>,
    /// Payload bytes in `queue`.
    pub(crate) queued_bytes: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement, oldest first.
    pub(crate) outgoing: VecDeque<OutFlight>,
    /// Incoming QoS 2 packet ids received and not yet released ([MQTT-4.3.3-9]).
    pub(crate) incoming_qos2: HashSet<u16>,
    /// The session's subscription filters as sent (with any `$share/` prefix), to remove them
    /// from the trie when the session ends. Their options live in the trie.
    pub(crate) subscriptions: HashSet<ByteString>,
    next_pid: u16,
    /// The attached connection, if any.
    pub(crate) conn: Option<ConnSlot>,
    /// Session Expiry Interval in seconds (u32::MAX: never).
    pub(crate) expiry_interval: u32,
    /// The expiry timer of a disconnected session; cancelling it keeps the session.
    pub(crate) expiry: Option<CancellationToken>,
    /// A will waiting for its delay; cancelling the token withdraws it.
    pub(crate) pending_will: Option<(CancellationToken, Arc<Message>)>,
    /// The live connection's will is recorded in the store (cleared when it goes normally).
    pub(crate) will_armed: bool,
}

impl SessionState {
    /// A fresh packet identifier not used by an outgoing message in flight.
    pub(crate) fn next_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = PacketId::new(self.next_pid) else {
                continue;
            };
            if !self.outgoing.iter().any(|f| f.pid == pid) {
                return pid;
            }
        }
    }

    /// Queues a delivery under the session's limits. A full queue drops a queued QoS 0
    /// message first, else the new message.
    pub(crate) fn enqueue(
        &mut self,
        delivery: Delivery,
        online: bool,
        limits: QueueLimits,
    ) -> Result<(), Dropped> {
        if !online && delivery.qos == QoS::AtMostOnce {
            return Err(Dropped::Offline);
        }
        let len = delivery.msg.payload.len();
        let full =
            |s: &Self| s.queue.len() >= limits.messages || s.queued_bytes + len > limits.bytes;
        if full(self) {
            if delivery.qos == QoS::AtMostOnce {
                return Err(Dropped::QueueFull);
            }
            let Some(i) = self.queue.iter().position(|d| d.qos == QoS::AtMostOnce) else {
                return Err(Dropped::QueueFull);
            };
            if let Some(old) = self.queue.remove(i) {
                self.queued_bytes -= old.msg.payload.len();
            }
            if full(self) {
                return Err(Dropped::QueueFull);
            }
        }
        self.queued_bytes += len;
        self.queue.push_back(delivery);
        Ok(())
    }

    /// Takes the next queued delivery.
    pub(crate) fn dequeue(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.queued_bytes -= d.msg.payload.len();
        Some(d)
    }

    /// Forgets everything but the attached connection: a clean start.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.queued_bytes = 0;
        self.outgoing.clear();
        self.incoming_qos2.clear();
        self.subscriptions.clear();
    }
}

/// A session. See the module documentation.
#[derive(Debug)]
pub(crate) struct Session {
    /// Unique key of this session object (never reused), for the trie and No Local.
    pub(crate) key: u64,
    /// The client identifier.
    pub(crate) client_id: ByteString,
    /// Whether a connection is attached; read by shared subscriptions without locking.
    online: AtomicBool,
    /// Whether the session outlives its connection (expiry interval above 0), so the store
    /// hears of its changes. Set at attach and restore.
    durable: AtomicBool,
    /// std `Mutex`: held only for short, non-async sections (never across `.await`).
    state: Mutex<SessionState>,
    /// Wakes the attached connection when a delivery was queued. A permit is stored when the
    /// connection is busy, so no wake-up is lost.
    pub(crate) notify: Notify,
}

impl Session {
    pub(crate) fn new_arc(key: u64, client_id: ByteString) -> Arc<Self> {
        Arc::new(Self {
            key,
            client_id,
            online: AtomicBool::new(false),
            durable: AtomicBool::new(false),
            state: Mutex::new(SessionState::default()),
            notify: Notify::new(),
        })
    }

    /// Locks the state. A poisoned lock (a panic elsewhere) still gives the data: session
    /// state stays consistent between statements.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    /// Whether the durable store records this session.
    pub(crate) fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    pub(crate) fn set_durable(&self, durable: bool) {
        self.durable.store(durable, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(qos: QoS, payload: &'static str) -> Delivery {
        Delivery {
            msg: Arc::new(Message {
                topic: "t".into(),
                payload: Bytes::from_static(payload.as_bytes()),
                qos,
                retain: false,
                properties: Properties::default(),
                expires_at: None,
                origin: 0,
            }),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            store_id: 0,
        }
    }

    #[test]
    fn full_queue_drops_qos0_first() {
        let limits = QueueLimits {
            messages: 2,
            bytes: 100,
        };
        let mut s = SessionState::default();
        s.enqueue(delivery(QoS::AtMostOnce, "a"), true, limits)
            .unwrap();
        s.enqueue(delivery(QoS::AtLeastOnce, "b"), true, limits)
            .unwrap();
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce, "c"), true, limits),
            Err(Dropped::QueueFull)
        );
        s.enqueue(delivery(QoS::AtLeastOnce, "d"), true, limits)
            .unwrap();
        let left: Vec<_> = std::iter::from_fn(|| s.dequeue())
            .map(|d| d.msg.payload.clone())
            .collect();
        assert_eq!(
            left,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"d")]
        );
        assert_eq!(s.queued_bytes, 0);
        assert_eq!(
            s.enqueue(delivery(QoS::AtMostOnce, "x"), false, limits),
            Err(Dropped::Offline)
        );
    }

    #[test]
    fn packet_ids_skip_those_in_flight() {
        let mut s = SessionState::default();
        let first = s.next_pid();
        s.outgoing.push_back(OutFlight {
            pid: PacketId::new(2).unwrap(),
            delivery: delivery(QoS::AtLeastOnce, "x"),
            stage: Stage::Published,
        });
        assert_eq!(first.get(), 1);
        assert_eq!(s.next_pid().get(), 3);
    }
}
