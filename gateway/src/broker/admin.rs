//! Operations on the live broker for the HTTP API and the gateway's own services: the table of
//! connected clients, session and retained-message listings, disconnecting a client, cutting
//! the clients whose login a security reload revoked ([`Broker::reload_security`]), and
//! in-process subscribers ([`Broker::subscribe_internal`]) that receive messages through a
//! channel instead of a socket.
//!
//! An internal subscriber is a [`Session`] that lives outside the session registry (so it is
//! never persisted, taken over or listed) and whose queue a small task drains into a bounded
//! `mpsc` channel. It needs no authentication: only gateway code can create one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use switchboard_mqtt::{ByteString, Bytes, ProtocolVersion, QoS, topic};
use tokio::sync::mpsc;

use super::session::{Kick, Kicked, Session};
use super::trie::Subscriber;
use super::{Broker, Message, Transport};
use crate::security::Login;

/// Live connections by client id. A std `Mutex`: held only to insert, remove, copy or check
/// entries, never across an `.await`.
#[derive(Debug, Default)]
pub(super) struct Clients {
    map: Mutex<HashMap<ByteString, Live>>,
}

/// One connection that completed its CONNECT.
#[derive(Debug)]
struct Live {
    /// Which connection of the client id this is (a newer one replaces the entry).
    generation: u64,
    summary: ClientSummary,
    /// What the client authenticated as, re-checked after each security reload.
    login: Arc<Login>,
    /// Makes the connection leave.
    kick: Kick,
}

/// A connected client, as listed by the HTTP API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClientSummary {
    /// The client identifier (an assigned one included).
    pub id: String,
    /// The peer address (for WebSocket behind a trusted proxy: the forwarded client address).
    pub peer: SocketAddr,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// `3.1`, `3.1.1` or `5.0`.
    pub protocol: &'static str,
    /// When the connection was accepted, Unix milliseconds.
    pub connected_since_ms: u64,
}

/// A session (connected or not), as listed by the HTTP API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionSummary {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection is attached.
    pub connected: bool,
    /// Subscription filters as sent (`$share/...` included), sorted.
    pub subscriptions: Vec<String>,
    /// Messages waiting in the queue.
    pub queued: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement.
    pub inflight: usize,
    /// Session expiry interval in seconds (`4294967295`: never).
    pub expiry_interval: u32,
}

/// A retained message, as listed by the HTTP API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RetainedSummary {
    /// Topic name.
    pub topic: String,
    /// QoS it was published with.
    pub qos: u8,
    /// The payload as text (invalid UTF-8 replaced).
    pub payload: String,
    /// Payload length in bytes.
    pub payload_bytes: usize,
}

/// One message received by an internal subscriber.
#[derive(Debug, Clone)]
pub struct InternalMessage {
    /// The message, shared with every other subscriber.
    pub msg: Arc<Message>,
    /// Whether it came from the retained store at subscribe time (live messages: `false`).
    pub retained: bool,
}

/// An in-process subscription. Messages arrive through [`InternalSubscriber::recv`]; dropping
/// it removes its subscriptions and ends its task.
#[derive(Debug)]
pub struct InternalSubscriber {
    broker: Broker,
    session: Arc<Session>,
    rx: mpsc::Receiver<InternalMessage>,
}

impl Transport {
    /// The transport's short name: `tcp`, `tls`, `ws` or `wss`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::WebSocket => "ws",
            Self::WebSocketTls => "wss",
        }
    }

    /// Every transport, in a fixed order (for metrics).
    pub const ALL: [Self; 4] = [Self::Tcp, Self::Tls, Self::WebSocket, Self::WebSocketTls];
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ByteString, Live>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Broker {
    /// Records a connection that completed its CONNECT, then checks its login against the
    /// security rules in force: a reload that happened after it authenticated and before this
    /// entry existed did not see it, so it is cut here instead
    /// ([`Broker::cut_revoked`] gives the order that makes this complete).
    #[expect(
        clippy::too_many_arguments,
        reason = "what the connection task knows of itself, recorded in one entry"
    )]
    pub(crate) fn client_up(
        &self,
        client_id: &ByteString,
        generation: u64,
        peer: SocketAddr,
        transport: Transport,
        version: ProtocolVersion,
        login: &Arc<Login>,
        kick: &Kick,
    ) {
        let summary = ClientSummary {
            id: client_id.to_string(),
            peer,
            transport: transport.name(),
            protocol: match version {
                ProtocolVersion::V3_1 => "3.1",
                ProtocolVersion::V3_1_1 => "3.1.1",
                ProtocolVersion::V5 => "5.0",
            },
            connected_since_ms: unix_ms(),
        };
        self.inner.clients.lock().insert(
            client_id.clone(),
            Live {
                generation,
                summary,
                login: Arc::clone(login),
                kick: kick.clone(),
            },
        );
        let scram = self.scram_credentials();
        let revoked = self.security().recheck().login(login).err();
        if let Some(why) = revoked.or_else(|| login.scram_revoked(scram.as_deref())) {
            kick.kick(Kicked::Revoked(why));
        }
    }

    /// Forgets a connection that ended (unless a newer one of the same client replaced it).
    pub(crate) fn client_down(&self, client_id: &ByteString, generation: u64) {
        let mut clients = self.inner.clients.lock();
        if clients
            .get(client_id)
            .is_some_and(|live| live.generation == generation)
        {
            clients.remove(client_id);
        }
    }

    /// Connected clients, ordered by client id.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut list: Vec<_> = self
            .inner
            .clients
            .lock()
            .values()
            .map(|live| live.summary.clone())
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Connected clients per transport, in the order of [`Transport::ALL`].
    #[must_use]
    pub fn connections_by_transport(&self) -> [u64; 4] {
        let mut counts = [0; 4];
        for live in self.inner.clients.lock().values() {
            let c = &live.summary;
            if let Some(i) = Transport::ALL.iter().position(|t| t.name() == c.transport) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Every session in the registry, ordered by client id.
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let sessions: Vec<Arc<Session>> = self.registry().values().cloned().collect();
        let mut list: Vec<_> = sessions
            .iter()
            .map(|s| {
                let state = s.lock();
                let mut subscriptions: Vec<String> = state
                    .subscriptions
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                subscriptions.sort();
                SessionSummary {
                    client_id: s.client_id.to_string(),
                    connected: state.conn.is_some(),
                    subscriptions,
                    queued: state.queue.len(),
                    inflight: state.outgoing.len(),
                    expiry_interval: state.expiry_interval,
                }
            })
            .collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        list
    }

    /// Closes the connection of `client_id` (v5 clients get DISCONNECT 0x8E, as on takeover);
    /// its session stays, per its expiry. False when the client is not connected.
    pub fn disconnect_client(&self, client_id: &str) -> bool {
        let Some(session) = self.registry().get(client_id).cloned() else {
            return false;
        };
        let state = session.lock();
        match &state.conn {
            Some(conn) => {
                conn.kick.kick(Kicked::TakenOver);
                true
            }
            None => false,
        }
    }

    /// Reloads the security rules ([`crate::security::Security::reload`]), then disconnects
    /// every client whose login the new rules no longer accept ([`Broker::cut_revoked`]). A
    /// failed reload keeps the rules in force and cuts nobody.
    ///
    /// # Errors
    /// Which file is bad and why.
    pub fn reload_security(&self) -> anyhow::Result<usize> {
        self.security().reload()?;
        Ok(self.cut_revoked())
    }

    /// Disconnects every connected client whose login the security rules in force no longer
    /// accept: a revoked or expired token, a user removed from the password file or whose
    /// password changed, an anonymous client now refused ([`crate::security::Revoked`]). MQTT 5
    /// clients get DISCONNECT 0x87 (not authorized), 3.1.1 clients are closed; the connection
    /// logs its client id and why. Its session stays per its expiry, and its will is published
    /// as for any connection the server closes ([MQTT-3.1.2-8]: only a client's DISCONNECT
    /// 0x00 discards it). Returns how many were told to leave.
    ///
    /// Complete with respect to concurrent CONNECTs: the rules are swapped before this walk,
    /// and a connection enters the table before it checks itself against the rules in force,
    /// so each connection is checked against the new rules by one or the other.
    pub fn cut_revoked(&self) -> usize {
        let check = self.security().recheck();
        let scram = self.scram_credentials();
        let cut: Vec<(Kick, Kicked)> = self
            .inner
            .clients
            .lock()
            .values()
            .filter_map(|live| {
                let why = check
                    .login(&live.login)
                    .err()
                    .or_else(|| live.login.scram_revoked(scram.as_deref()))?;
                Some((live.kick.clone(), Kicked::Revoked(why)))
            })
            .collect();
        for (kick, why) in &cut {
            kick.kick(*why);
        }
        cut.len()
    }

    /// Retained messages whose topic matches `filter`, ordered by topic.
    ///
    /// # Errors
    /// The filter is not a valid topic filter.
    pub fn retained(&self, filter: &str) -> Result<Vec<RetainedSummary>, String> {
        topic::validate_topic_filter(filter).map_err(|e| format!("invalid filter: {e}"))?;
        let mut list: Vec<_> = self
            .retained_matching(filter)
            .iter()
            .map(|m| RetainedSummary {
                topic: m.topic.to_string(),
                qos: m.qos as u8,
                payload: String::from_utf8_lossy(&m.payload).into_owned(),
                payload_bytes: m.payload.len(),
            })
            .collect();
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(list)
    }

    /// Deletes the retained message on `topic` (as an empty retained PUBLISH would, so
    /// subscribers and the store see it). False when there was none.
    pub fn delete_retained(&self, topic: &str) -> bool {
        if !self.inner.retained.read().contains_key(topic) {
            return false;
        }
        self.publish_internal(topic.to_owned(), Bytes::new(), QoS::AtMostOnce, true);
        true
    }

    /// Subscribes gateway code to `filters`: matching messages (and, first, the retained
    /// messages matching each filter) arrive through the returned subscriber, at most
    /// `capacity` waiting in its channel (beyond that, the session queue's limits apply and
    /// drops are counted as usual). Invalid filters are skipped with a warning.
    #[must_use]
    pub fn subscribe_internal(
        &self,
        name: &str,
        filters: &[&str],
        capacity: usize,
    ) -> InternalSubscriber {
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let session = Session::new_arc(key, format!("$internal/{name}").into());
        session.set_online(true);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pump_session = Arc::clone(&session);
        // Ends when the subscriber is dropped (the channel closes and the session goes
        // offline, with a wake-up).
        tokio::spawn(async move {
            loop {
                pump_session.notify.notified().await;
                if tx.is_closed() || !pump_session.is_online() {
                    return;
                }
                loop {
                    let Some(d) = pump_session.lock().dequeue() else {
                        break;
                    };
                    let item = InternalMessage {
                        msg: d.msg,
                        retained: d.retain,
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
        });
        let subscriber = InternalSubscriber {
            broker: self.clone(),
            session,
            rx,
        };
        for filter in filters {
            subscriber.add(filter);
        }
        subscriber
    }
}

impl InternalSubscriber {
    /// Adds one filter (no-op when already subscribed); its retained messages are delivered
    /// first. Deliveries are QoS 0 so the durable store never hears of this session. False when the filter is invalid.
    pub fn add(&self, filter: &str) -> bool {
        if topic::validate_topic_filter(filter).is_err() {
            tracing::warn!(
                filter,
                "internal subscription with an invalid filter skipped"
            );
            return false;
        }
        if !self.session.lock().subscriptions.insert(filter.into()) {
            return true;
        }
        self.broker.trie_insert(
            filter,
            Subscriber {
                session: Arc::clone(&self.session),
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                id: None,
            },
        );
        for msg in self.broker.retained_matching(filter) {
            self.broker.deliver_to(
                &self.session,
                super::session::Delivery {
                    qos: QoS::AtMostOnce,
                    msg,
                    retain: true,
                    sub_ids: Vec::new(),
                    store_id: 0,
                },
            );
        }
        true
    }

    /// The next message; `None` only if the broker side ended.
    pub async fn recv(&mut self) -> Option<InternalMessage> {
        self.rx.recv().await
    }
}

impl Drop for InternalSubscriber {
    fn drop(&mut self) {
        let filters: Vec<ByteString> = self.session.lock().subscriptions.drain().collect();
        for filter in filters {
            self.broker.trie_remove(&filter, self.session.key);
        }
        self.session.set_online(false);
        self.rx.close();
        self.session.notify.notify_one();
    }
}
