//! The MQTT 3.1.1 / 5.0 broker.
//!
//! [`Broker`] holds the shared state (session registry, subscription trie, retained messages,
//! counters) and serves one connection at a time per task through
//! [`Broker::serve_connection`], which is generic over the byte stream so TCP, TLS and WebSocket
//! run the same code.
//!
//! # Concurrency model
//! * Every connection is one tokio task that owns its socket, its read buffer, its write
//!   buffer and its protocol state ([`connection`]).
//! * The subscription trie sits behind a `parking_lot::RwLock`. A PUBLISH takes the read lock
//!   only while collecting matching sessions (no `.await`, no I/O), so publishers on different
//!   cores route in parallel; SUBSCRIBE/UNSUBSCRIBE take the write lock briefly.
//! * Each matched session gets the message through its own bounded queue ([`session`]): a short
//!   `std::sync::Mutex` section pushes the delivery, then a `Notify` wakes the session's
//!   connection task, which encodes everything ready into its write buffer and writes once.
//! * The payload is a `Bytes` slice of the publisher's read buffer, shared (`Arc<Message>`) by
//!   every subscriber; nothing is copied per subscriber.
//! * The session registry (client id to session) is a `std::sync::Mutex<HashMap>` touched only
//!   at CONNECT and at disconnect. Lock order: registry, then a session; the trie lock is never
//!   held together with another lock.
//!
//! # Persistence
//! Memory is the working copy; a [`Store`] is told of every durable change (retained
//! messages, and sessions whose expiry interval is above 0: subscriptions, queued and in-flight
//! QoS 1/2 deliveries, incoming QoS 2 ids, delayed wills, expiry deadlines). The redb store
//! ([`RedbStore`], `persist.rs`) commits them in groups on its own thread; a connection awaits
//! the commit of its changes before it writes the PUBACK/PUBREC/PUBCOMP (or the PUBLISH/PUBREL
//! whose state it recorded). [`Broker::with_parts`] restores the store's content (sessions in
//! the registry and the trie) before any listener accepts.

mod admin;
mod auth;
mod conn;
mod enhanced_auth;
mod metrics;
mod persist;
mod router;
mod session;
mod store;
mod sys;
mod trie;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use switchboard_mqtt::{ByteString, Bytes, Properties, QoS, SubscriptionOptions, topic};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use self::admin::{
    ClientSummary, InternalMessage, InternalSubscriber, RetainedSummary, SessionSummary,
};
pub use self::auth::{Authorizer, ClientInfo, ConfigAuthorizer};
pub use self::metrics::{COMMIT_BUCKETS, Histogram, Metrics};
pub use self::persist::{DurabilityMode, RedbStore, StoreConfig};
pub use self::session::Message;
pub use self::store::{
    CommitObserver, MemoryStore, QueuedMessage, Restored, RestoredDelivery, RestoredSession, Store,
    StoreError, Ticket,
};
pub use crate::config::BrokerConfig;
use crate::security::{ConnectionMeta, Security};

use self::router::{Attached, Change, Durability, Published, Router, RouterFuture, Subscribed};
use self::session::{
    ConnSlot, Delivery, Dropped, Kick, Kicked, OutFlight, QueueLimits, Session, Stage,
};
use self::trie::{Route, SubTrie, Subscriber};

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

/// The broker: cheap to clone, all state shared behind one `Arc`.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: BrokerConfig,
    /// The subscription index. Read-locked while a PUBLISH collects its routes, write-locked by
    /// (un)subscribe and session end; never held across `.await` or together with another lock.
    subs: RwLock<SubTrie>,
    /// Retained messages by topic. Same locking rules as `subs`.
    retained: RwLock<HashMap<ByteString, Arc<Message>, ahash::RandomState>>,
    /// Client id to session. std `Mutex`: held only for short sections without `.await`.
    sessions: Mutex<HashMap<ByteString, Arc<Session>, ahash::RandomState>>,
    /// Limits the number of simultaneous connections; a permit moves into each connection task.
    connections: Arc<Semaphore>,
    metrics: Metrics,
    store: Arc<dyn Store>,
    authorizer: Arc<dyn Authorizer>,
    /// Authentication and abuse limits (usually also `authorizer`).
    security: Arc<Security>,
    /// Source of session keys (0 is the broker itself).
    next_key: AtomicU64,
    /// Source of connection generations.
    next_generation: AtomicU64,
    started: Instant,
    /// Distinguishes assigned client identifiers of successive runs.
    boot_id: u64,
    /// Live connections for the HTTP API and the per-transport gauges (see [`admin`]).
    clients: admin::Clients,
    /// SCRAM-SHA-256 verifiers; read (the `Arc` cloned) once per SCRAM exchange, replaced by
    /// [`Broker::set_scram_credentials`]. Never held across `.await`.
    scram: RwLock<Option<Arc<crate::scram::Credentials>>>,
}

/// What delivering to one session did to durable state.
#[derive(Debug, Default, Clone, Copy)]
struct Durable {
    /// Store ticket of the queued copy (0: none).
    ticket: Ticket,
    /// The store refused it (size cap).
    rejected: bool,
}

impl Broker {
    /// A broker with the in-memory store and the configured deny list.
    #[must_use]
    pub fn new(config: BrokerConfig) -> Self {
        let authorizer = ConfigAuthorizer::new(config.deny_subscribe.clone());
        Self::with_parts(config, Arc::new(MemoryStore), Arc::new(authorizer))
    }

    /// A broker with an explicit store and authorizer; authentication and limits are the
    /// secure defaults ([`Security::defaults`]: anonymous from loopback only).
    #[must_use]
    pub fn with_parts(
        config: BrokerConfig,
        store: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        let security = Arc::new(Security::defaults(config.deny_subscribe.clone()));
        Self::assemble(config, store, authorizer, security)
    }

    /// A broker whose authentication, authorization and abuse limits all come from `security`.
    #[must_use]
    pub fn with_security(
        config: BrokerConfig,
        store: Arc<dyn Store>,
        security: Arc<Security>,
    ) -> Self {
        let authorizer: Arc<dyn Authorizer> = Arc::clone(&security) as Arc<dyn Authorizer>;
        Self::assemble(config, store, authorizer, security)
    }

    fn assemble(
        config: BrokerConfig,
        store: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
        security: Arc<Security>,
    ) -> Self {
        let boot_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let broker = Self {
            inner: Arc::new(Inner {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                config,
                subs: RwLock::default(),
                retained: RwLock::default(),
                sessions: Mutex::default(),
                metrics: Metrics::default(),
                store,
                authorizer,
                security,
                next_key: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
                started: Instant::now(),
                boot_id,
                clients: admin::Clients::default(),
                scram: RwLock::new(None),
            }),
        };
        let weak = Arc::downgrade(&broker.inner);
        broker.inner.store.on_commit(Box::new(move |took| {
            if let Some(inner) = weak.upgrade() {
                inner.metrics.observe_commit(took);
            }
        }));
        broker.restore();
        broker
    }

    /// A broker with the configured deny list and `store` (whose content is restored now).
    ///
    /// # Panics
    /// Outside a tokio runtime when the store holds sessions or delayed wills with a deadline
    /// (their timers are spawned).
    #[must_use]
    pub fn with_store(config: BrokerConfig, store: Arc<dyn Store>) -> Self {
        let authorizer = ConfigAuthorizer::new(config.deny_subscribe.clone());
        Self::with_parts(config, store, Arc::new(authorizer))
    }

    /// Rebuilds what the store read from disk: retained messages, then each session with its
    /// subscriptions (in the trie, so it is routable before any listener accepts), queue,
    /// in-flight messages, incoming QoS 2 ids, expiry timer and delayed will. Sessions and wills
    /// already due are ended and published last, once every session is routable.
    fn restore(&self) {
        let restored = self.inner.store.take_restored();
        let metrics = &self.inner.metrics;
        for msg in restored.retained {
            if self
                .inner
                .retained
                .write()
                .insert(msg.topic.clone(), Arc::new(msg))
                .is_none()
            {
                Metrics::add(&metrics.retained, 1);
            }
        }
        let now = std::time::SystemTime::now();
        let mut due_sessions = Vec::new();
        let mut due_wills = Vec::new();
        for rs in restored.sessions {
            let session = Session::new_arc(
                self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                rs.client_id.clone(),
            );
            session.set_durable(true);
            {
                let mut state = session.lock();
                state.expiry_interval = rs.expiry_interval;
                for d in rs.messages {
                    let delivery = Delivery {
                        msg: Arc::new(d.msg),
                        qos: d.qos,
                        retain: d.retain,
                        sub_ids: d.sub_ids,
                        store_id: d.id,
                    };
                    match d.sent {
                        Some((pid, released)) => state.outgoing.push_back(OutFlight {
                            pid,
                            delivery,
                            stage: if released {
                                Stage::Released
                            } else {
                                Stage::Published
                            },
                        }),
                        None => {
                            state.queued_bytes += delivery.msg.payload.len();
                            state.queue.push_back(delivery);
                        }
                    }
                }
                state.incoming_qos2 = rs.incoming_qos2.into_iter().collect();
            }
            for (filter, options, id) in rs.subscriptions {
                session.lock().subscriptions.insert(filter.clone());
                self.trie_insert(
                    &filter,
                    Subscriber {
                        session: Arc::clone(&session),
                        qos: options.qos,
                        no_local: options.no_local,
                        retain_as_published: options.retain_as_published,
                        id,
                    },
                );
            }
            self.registry()
                .insert(rs.client_id.clone(), Arc::clone(&session));
            Metrics::add(&metrics.sessions, 1);
            if let Some((will, at)) = rs.will {
                match at.duration_since(now) {
                    Ok(left) if !left.is_zero() => {
                        self.delay_will_for(&session, Arc::new(will), left);
                    }
                    _ => due_wills.push((Arc::clone(&session), will)),
                }
            }
            let left = match rs.expires_at {
                Some(at) => Some(at.duration_since(now).unwrap_or_default()),
                None if rs.expiry_interval == u32::MAX => None,
                // Attached when the broker stopped: it expires an interval after this start.
                None => Some(Duration::from_secs(rs.expiry_interval.into())),
            };
            match left {
                Some(left) if left.is_zero() => due_sessions.push(session),
                Some(left) => self.arm_expiry_in(&session, left),
                None => {}
            }
        }
        for (session, will) in due_wills {
            Router::publish(self, Arc::new(will), Durability::Durable);
            self.inner.store.will_cleared(&session.client_id);
        }
        for session in due_sessions {
            self.end_if_idle(&session);
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The broker's counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Time since the broker was created.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// A connection slot, or `None` when `max_connections` are open. Every transport takes one
    /// before calling [`Broker::serve_connection`] and keeps it for the connection's lifetime.
    #[must_use]
    pub fn try_acquire_connection(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.inner.connections).try_acquire_owned().ok()
    }

    /// Serves one client connection until it closes, the client is taken over, or `shutdown` is
    /// cancelled (v5 clients then get DISCONNECT 0x8B). Never fails: protocol and I/O errors
    /// close this connection only and are logged.
    pub async fn serve_connection<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        transport: Transport,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        conn::serve(
            self,
            stream,
            peer,
            transport,
            ConnectionMeta::default(),
            shutdown,
        )
        .await;
    }

    /// [`Broker::serve_connection`] with what the transport knows beyond the byte stream
    /// (WebSocket `Origin` header and `?token=`).
    pub async fn serve_connection_with<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        transport: Transport,
        meta: ConnectionMeta,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        conn::serve(self, stream, peer, transport, meta, shutdown).await;
    }

    /// Uses `credentials` for SCRAM-SHA-256 enhanced authentication from now on (`None`:
    /// SCRAM is refused with CONNACK 0x8C). Connections already authenticated are not affected.
    pub fn set_scram_credentials(&self, credentials: Option<Arc<crate::scram::Credentials>>) {
        *self.inner.scram.write() = credentials;
    }

    /// The SCRAM credentials in force.
    #[must_use]
    pub fn scram_credentials(&self) -> Option<Arc<crate::scram::Credentials>> {
        self.inner.scram.read().clone()
    }

    /// Authentication, authorization and abuse limits (reload them with
    /// [`Security::reload`]).
    #[must_use]
    pub fn security(&self) -> &Arc<Security> {
        &self.inner.security
    }

    /// Publishes a message from the gateway itself (simulator, `$SYS`, HTTP API). Returns the
    /// number of sessions it was routed to; an invalid topic name (empty, wildcards) is dropped
    /// and gives 0.
    pub fn publish_internal(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> usize {
        self.publish_own(
            topic.into(),
            payload.into(),
            qos,
            retain,
            Durability::Durable,
        )
    }

    /// Publishes a retained QoS 0 message from the gateway that is kept in memory only, never
    /// written to the store: for state the gateway derives again after a restart (the device
    /// channel), so it costs no disk writes. An empty payload deletes it. Returns the number of
    /// sessions it was routed to (0 for an invalid topic name).
    pub fn publish_volatile_retained(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
    ) -> usize {
        let (topic, payload) = (topic.into(), payload.into());
        self.publish_own(topic, payload, QoS::AtMostOnce, true, Durability::Volatile)
    }

    /// A message of the gateway's own, through [`Router::publish`].
    fn publish_own(
        &self,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        durability: Durability,
    ) -> usize {
        if topic::validate_topic_name(&topic).is_err() {
            tracing::debug!(%topic, "internal publish with an invalid topic dropped");
            return 0;
        }
        let msg = Message {
            topic,
            payload,
            qos,
            retain,
            properties: Properties::default(),
            expires_at: None,
            origin: 0,
        };
        Router::publish(self, Arc::new(msg), durability).routed
    }

    /// Stores, replaces or deletes the retained message on `msg.topic`; the store is told unless
    /// `durability` is volatile. `Err` when the store refused it (nothing changed).
    fn retain(&self, msg: &Arc<Message>, durability: Durability) -> Result<Ticket, StoreError> {
        let metrics = &self.inner.metrics;
        let durable = durability == Durability::Durable;
        if msg.payload.is_empty() {
            // [MQTT-3.3.1-10]: an empty retained message deletes the retained one.
            if self.inner.retained.write().remove(&msg.topic).is_some() {
                Metrics::sub(&metrics.retained, 1);
            }
            return Ok(if durable {
                self.inner.store.retained_deleted(&msg.topic)
            } else {
                0
            });
        }
        let ticket = if durable {
            self.inner.store.retained_set(msg)?
        } else {
            0
        };
        if self
            .inner
            .retained
            .write()
            .insert(msg.topic.clone(), Arc::clone(msg))
            .is_none()
        {
            Metrics::add(&metrics.retained, 1);
        }
        Ok(ticket)
    }

    /// Counts and logs a change the store refused.
    fn store_rejected(&self, topic: &str, err: StoreError) {
        Metrics::add(&self.inner.metrics.store_rejected, 1);
        tracing::debug!(%topic, "store refused a durable message: {err}");
    }

    /// Delivers `msg` to every matching session.
    fn route(&self, msg: &Arc<Message>) -> Published {
        thread_local! {
            /// Scratch space for the matches of one publication, reused by every publication
            /// routed on this thread (no allocation per PUBLISH).
            static ROUTES: std::cell::RefCell<Vec<Route>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut routes = ROUTES.with(|r| std::mem::take(&mut *r.borrow_mut()));
        // Read lock only while walking the trie: no `.await`, no session lock inside.
        self.inner
            .subs
            .read()
            .collect(&msg.topic, msg.origin, &mut routes);
        let mut published = Published {
            routed: routes.len(),
            ..Published::default()
        };
        for route in routes.drain(..) {
            let delivery = Delivery {
                msg: Arc::clone(msg),
                qos: msg.qos.min(route.qos),
                retain: route.retain_as_published && msg.retain,
                sub_ids: route.sub_ids,
                store_id: 0,
            };
            let durable = self.deliver_to(&route.session, delivery);
            published.ticket = published.ticket.max(durable.ticket);
            published.rejected |= durable.rejected;
        }
        ROUTES.with(|r| *r.borrow_mut() = routes);
        published
    }

    /// Puts a delivery into a session's queue and wakes its connection.
    /// QoS 1/2 deliveries to a durable session are recorded in the store first, under the
    /// session lock, so their later acknowledgement is always recorded after them.
    fn deliver_to(&self, session: &Session, mut delivery: Delivery) -> Durable {
        let mut durable = Durable::default();
        let persist = delivery.qos != QoS::AtMostOnce && session.is_durable();
        let online = session.is_online();
        let store = self.store();
        let result = {
            let mut state = session.lock();
            if persist {
                let id = store.next_id();
                let queued = QueuedMessage {
                    msg: &delivery.msg,
                    qos: delivery.qos,
                    retain: delivery.retain,
                    sub_ids: &delivery.sub_ids,
                };
                match store.message_queued(&session.client_id, id, &queued) {
                    Ok(ticket) => {
                        durable.ticket = ticket;
                        delivery.store_id = id;
                    }
                    Err(err) => {
                        drop(state);
                        self.store_rejected(&delivery.msg.topic, err);
                        Metrics::add(&self.inner.metrics.messages_dropped, 1);
                        durable.rejected = true;
                        return durable;
                    }
                }
            }
            let id = delivery.store_id;
            let result = state.enqueue(delivery, online, self.queue_limits());
            if result.is_err() && id != 0 {
                store.message_acked(&session.client_id, id);
            }
            result
        };
        match result {
            Ok(()) => {
                if online {
                    session.notify.notify_one();
                }
            }
            Err(why) => {
                Metrics::add(&self.inner.metrics.messages_dropped, 1);
                if why == Dropped::QueueFull {
                    tracing::debug!(client_id = %session.client_id, "session queue full, message dropped");
                }
            }
        }
        durable
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.inner.config.max_queued_messages,
            bytes: self.inner.config.max_queued_bytes,
        }
    }

    /// Retained messages matching `filter` (for delivery at subscribe time).
    pub(crate) fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let retained = self.inner.retained.read();
        if !filter.contains(['+', '#']) {
            return retained.get(filter).cloned().into_iter().collect();
        }
        retained
            .values()
            .filter(|m| trie::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<ByteString, Arc<Session>, ahash::RandomState>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh client identifier for a client that sent an empty one.
    fn next_client_id(&self) -> ByteString {
        let n = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        format!("sb-{:x}-{n:x}", self.inner.boot_id & 0xffff_ffff).into()
    }

    /// Attaches a new connection to the session of `client_id`: takes over a live one (the old
    /// connection is kicked and waited for), resumes a stored one unless `clean_start`, or
    /// creates one.
    async fn attach_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry: u32,
    ) -> Attached {
        loop {
            let wait = {
                let mut registry = self.registry();
                let existing = registry.get(client_id).cloned();
                let live = existing.as_ref().and_then(|s| {
                    s.lock()
                        .conn
                        .as_ref()
                        .map(|c| (c.generation, c.kick.clone(), c.closed.clone()))
                });
                match (existing, live) {
                    (Some(_), Some(live)) => live,
                    (Some(session), None) if !clean_start => {
                        let was_durable = session.is_durable();
                        let mut attached = self.attach_to(&session, true, expiry);
                        drop(registry);
                        if expiry > 0 {
                            attached.ticket = self.store().session_opened(client_id, expiry, false);
                        } else if was_durable {
                            // Resumed with expiry 0: it ends with this connection.
                            attached.ticket = self.store().session_ended(client_id);
                        }
                        return attached;
                    }
                    (existing, _) => {
                        let session = Session::new_arc(
                            self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                            client_id.clone(),
                        );
                        let mut attached = self.attach_to(&session, false, expiry);
                        registry.insert(client_id.clone(), session);
                        drop(registry);
                        Metrics::add(&self.inner.metrics.sessions, 1);
                        if let Some(old) = existing {
                            self.discard(&old);
                        }
                        if expiry > 0 {
                            attached.ticket = self.store().session_opened(client_id, expiry, true);
                        }
                        return attached;
                    }
                }
            };
            // [MQTT-3.1.4-3]: a live connection with this client id is closed first.
            let (generation, kick, closed) = wait;
            kick.kick(Kicked::TakenOver);
            if tokio::time::timeout(Duration::from_secs(5), closed.cancelled())
                .await
                .is_err()
            {
                // The old connection is stuck (or its task died): detach it by force so the
                // session is not blocked forever.
                tracing::warn!(%client_id, "previous connection did not close in time");
                if let Some(session) = self.registry().get(client_id).cloned() {
                    let mut state = session.lock();
                    if state
                        .conn
                        .as_ref()
                        .is_some_and(|c| c.generation == generation)
                    {
                        state.conn = None;
                        session.set_online(false);
                    }
                }
            }
        }
    }

    fn attach_to(&self, session: &Arc<Session>, present: bool, expiry: u32) -> Attached {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let kick = Kick::default();
        let mut state = session.lock();
        if let Some(timer) = state.expiry.take() {
            timer.cancel();
        }
        // [MQTT-3.1.3-9] a delayed will is withdrawn when the client reconnects in time.
        if let Some((timer, _)) = state.pending_will.take() {
            timer.cancel();
            if session.is_durable() {
                self.store().will_cleared(&session.client_id);
            }
        }
        session.set_durable(expiry > 0);
        state.expiry_interval = expiry;
        state.conn = Some(ConnSlot {
            generation,
            kick: kick.clone(),
            closed: CancellationToken::new(),
        });
        session.set_online(true);
        Attached {
            session: Arc::clone(session),
            session_present: present,
            generation,
            kick,
            ticket: 0,
        }
    }

    /// Detaches a closing connection. Publishes the will now, or after its delay; ends the
    /// session now (expiry 0) or arms its expiry timer.
    fn detach_session(
        &self,
        session: &Arc<Session>,
        generation: u64,
        will: Option<(Message, u32)>,
    ) {
        let (closed, expiry) = {
            let mut state = session.lock();
            let Some(slot) = state.conn.take_if(|c| c.generation == generation) else {
                return;
            };
            session.set_online(false);
            (slot.closed, state.expiry_interval)
        };
        if let Some((will, delay)) = will {
            let will = Arc::new(will);
            if delay == 0 || expiry == 0 {
                Router::publish(self, will, Durability::Durable);
            } else {
                self.delay_will(session, will, delay);
            }
        }
        if expiry == 0 {
            self.end_if_idle(session);
        } else {
            if session.is_durable() {
                self.store().session_detached(&session.client_id, expiry);
            }
            if expiry != u32::MAX {
                self.arm_expiry(session, expiry);
            }
        }
        closed.cancel();
    }

    fn delay_will(&self, session: &Arc<Session>, will: Arc<Message>, delay: u32) {
        let delay = Duration::from_secs(delay.into());
        if session.is_durable() {
            let at = std::time::SystemTime::now() + delay;
            self.store().will_delayed(&session.client_id, &will, at);
        }
        self.delay_will_for(session, will, delay);
    }

    /// Arms the timer of a delayed will (already recorded in the store when durable).
    fn delay_will_for(&self, session: &Arc<Session>, will: Arc<Message>, delay: Duration) {
        let timer = CancellationToken::new();
        if let Some((old, _)) = session.lock().pending_will.replace((timer.clone(), will)) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(delay) => {
                    let will = session.lock().pending_will.take_if(|(t, _)| !t.is_cancelled());
                    if let Some((_, will)) = will {
                        Router::publish(&broker, Arc::clone(&will), Durability::Durable);
                        if session.is_durable() {
                            broker.store().will_cleared(&session.client_id);
                        }
                    }
                }
            }
        });
    }

    fn arm_expiry(&self, session: &Arc<Session>, expiry: u32) {
        self.arm_expiry_in(session, Duration::from_secs(expiry.into()));
    }

    fn arm_expiry_in(&self, session: &Arc<Session>, expiry: Duration) {
        let timer = CancellationToken::new();
        if let Some(old) = session.lock().expiry.replace(timer.clone()) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(expiry) => {
                    broker.end_if_idle(&session);
                }
            }
        });
    }

    /// Ends `session` if it is still registered and has no connection.
    fn end_if_idle(&self, session: &Arc<Session>) {
        {
            let mut registry = self.registry();
            let registered = registry
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session));
            if !registered || session.lock().conn.is_some() {
                return;
            }
            registry.remove(&session.client_id);
        }
        self.discard(session);
    }

    /// Forgets a session already removed from the registry: its subscriptions leave the trie,
    /// a pending will is published now ([MQTT-3.1.2-8]: the session ended).
    fn discard(&self, session: &Arc<Session>) {
        let (subscriptions, will) = {
            let mut state = session.lock();
            if let Some(timer) = state.expiry.take() {
                timer.cancel();
            }
            let subscriptions = std::mem::take(&mut state.subscriptions);
            state.clear();
            (subscriptions, state.pending_will.take())
        };
        if !subscriptions.is_empty() {
            let mut trie = self.inner.subs.write();
            for filter in &subscriptions {
                let (group, filter) = split_shared(filter);
                trie.remove(group, filter, session.key);
            }
            self.inner
                .metrics
                .subscriptions
                .store(trie.len() as u64, Ordering::Relaxed);
        }
        if let Some((timer, will)) = will {
            timer.cancel();
            Router::publish(self, will, Durability::Durable);
        }
        Metrics::sub(&self.inner.metrics.sessions, 1);
        if session.is_durable() {
            session.set_durable(false);
            self.store().session_ended(&session.client_id);
        }
    }

    /// Adds a subscription to the trie; true when it replaced an existing one.
    pub(crate) fn trie_insert(&self, filter: &str, sub: Subscriber) -> bool {
        let (group, filter) = split_shared(filter);
        let mut trie = self.inner.subs.write();
        let replaced = trie.insert(group, filter, sub);
        self.inner
            .metrics
            .subscriptions
            .store(trie.len() as u64, Ordering::Relaxed);
        replaced
    }

    /// Removes a subscription from the trie; true when there was one.
    pub(crate) fn trie_remove(&self, filter: &str, key: u64) -> bool {
        let (group, filter) = split_shared(filter);
        let mut trie = self.inner.subs.write();
        let removed = trie.remove(group, filter, key);
        self.inner
            .metrics
            .subscriptions
            .store(trie.len() as u64, Ordering::Relaxed);
        removed
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The authorizer, shared with a connection.
    fn authorizer_arc(&self) -> Arc<dyn Authorizer> {
        Arc::clone(&self.inner.authorizer)
    }

    /// Refreshes the retained `$SYS/broker/...` topics every `sys_interval` seconds until
    /// `shutdown`; returns at once when the interval is 0.
    pub async fn run_sys(&self, shutdown: CancellationToken) {
        sys::run(self, shutdown).await;
    }
}

/// The single-node router: the subscription trie, the session registry, the retained map and
/// the store of this process.
impl Router for Broker {
    fn assign_client_id(&self) -> ByteString {
        self.next_client_id()
    }

    fn attach<'a>(
        &'a self,
        client_id: &'a ByteString,
        clean_start: bool,
        expiry: u32,
    ) -> RouterFuture<'a, Attached> {
        Box::pin(self.attach_session(client_id, clean_start, expiry))
    }

    fn detach(&self, session: &Arc<Session>, generation: u64, will: Option<(Message, u32)>) {
        self.detach_session(session, generation, will);
    }

    fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &ByteString,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Subscribed {
        let replaced = self.trie_insert(
            filter,
            Subscriber {
                session: Arc::clone(session),
                qos: options.qos,
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                id,
            },
        );
        session.lock().subscriptions.insert(filter.clone());
        let ticket = if session.is_durable() {
            self.store()
                .subscribed(&session.client_id, filter, options, id)
        } else {
            0
        };
        Subscribed { replaced, ticket }
    }

    fn unsubscribe(&self, session: &Arc<Session>, filter: &ByteString) -> Option<Ticket> {
        let existed = session.lock().subscriptions.remove(filter);
        let removed = self.trie_remove(filter, session.key);
        if !(existed || removed) {
            return None;
        }
        Some(if session.is_durable() {
            self.store().unsubscribed(&session.client_id, filter)
        } else {
            0
        })
    }

    fn publish(&self, msg: Arc<Message>, durability: Durability) -> Published {
        let mut retained = Published::default();
        if msg.retain {
            match self.retain(&msg, durability) {
                Ok(ticket) => retained.ticket = ticket,
                Err(err) => {
                    self.store_rejected(&msg.topic, err);
                    retained.rejected = true;
                }
            }
        }
        let mut published = self.route(&msg);
        published.ticket = published.ticket.max(retained.ticket);
        published.rejected |= retained.rejected;
        published
    }

    fn retained(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained_matching(filter)
    }

    fn deliver(&self, session: &Session, delivery: Delivery) -> Ticket {
        self.deliver_to(session, delivery).ticket
    }

    fn record(&self, client_id: &str, change: Change) -> Ticket {
        let store = self.store();
        match change {
            Change::Sent { id, pid } => store.message_sent(client_id, id, pid),
            Change::Released { id, pid } => store.message_released(client_id, id, pid),
            Change::Acked { id } => store.message_acked(client_id, id),
            Change::Qos2Received(pid) => store.qos2_received(client_id, pid),
            Change::Qos2Released(pid) => store.qos2_released(client_id, pid),
        }
    }

    fn committed(&self, ticket: Ticket) -> RouterFuture<'_, ()> {
        self.store().committed(ticket)
    }
}

/// Splits `$share/<group>/<filter>` into the group and the filter; other filters have no group.
pub(crate) fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(filter) {
        Ok(Some(shared)) => (Some(shared.group), shared.filter),
        _ => (None, filter),
    }
}
