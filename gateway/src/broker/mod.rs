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

mod auth;
mod connection;
mod metrics;
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
use switchboard_mqtt::{ByteString, Bytes, Properties, QoS, topic};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use self::auth::{Authorizer, ClientInfo, ConfigAuthorizer};
pub use self::metrics::Metrics;
pub use self::session::Message;
pub use self::store::{MemoryStore, Store};
pub use crate::config::BrokerConfig;

use self::session::{ConnSlot, Delivery, Dropped, QueueLimits, Session};
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
    /// Source of session keys (0 is the broker itself).
    next_key: AtomicU64,
    /// Source of connection generations.
    next_generation: AtomicU64,
    started: Instant,
    /// Distinguishes assigned client identifiers of successive runs.
    boot_id: u64,
}

/// A session attached to a new connection.
#[derive(Debug)]
pub(crate) struct Attached {
    session: Arc<Session>,
    session_present: bool,
    generation: u64,
    /// Cancelled when another connection takes the session over.
    kick: CancellationToken,
}

impl Broker {
    /// A broker with the in-memory store and the configured deny list.
    #[must_use]
    pub fn new(config: BrokerConfig) -> Self {
        let authorizer = ConfigAuthorizer::new(config.deny_subscribe.clone());
        Self::with_parts(config, Arc::new(MemoryStore), Arc::new(authorizer))
    }

    /// A broker with an explicit store and authorizer.
    #[must_use]
    pub fn with_parts(
        config: BrokerConfig,
        store: Arc<dyn Store>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        let boot_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            inner: Arc::new(Inner {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                config,
                subs: RwLock::default(),
                retained: RwLock::default(),
                sessions: Mutex::default(),
                metrics: Metrics::default(),
                store,
                authorizer,
                next_key: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
                started: Instant::now(),
                boot_id,
            }),
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
        connection::serve(self, stream, peer, transport, shutdown).await;
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
        let topic = topic.into();
        if topic::validate_topic_name(&topic).is_err() {
            tracing::debug!(%topic, "internal publish with an invalid topic dropped");
            return 0;
        }
        self.publish(Message {
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
            expires_at: None,
            origin: 0,
        })
    }

    /// Stores or deletes the retained message if `msg.retain`, then routes `msg`.
    pub(crate) fn publish(&self, msg: Message) -> usize {
        let msg = Arc::new(msg);
        if msg.retain {
            self.retain(&msg);
        }
        self.route(&msg, &mut Vec::new())
    }

    fn retain(&self, msg: &Arc<Message>) {
        let metrics = &self.inner.metrics;
        if msg.payload.is_empty() {
            // [MQTT-3.3.1-10]: an empty retained message deletes the retained one.
            if self.inner.retained.write().remove(&msg.topic).is_some() {
                Metrics::sub(&metrics.retained, 1);
            }
            self.inner.store.retained_deleted(&msg.topic);
        } else {
            if self
                .inner
                .retained
                .write()
                .insert(msg.topic.clone(), Arc::clone(msg))
                .is_none()
            {
                Metrics::add(&metrics.retained, 1);
            }
            self.inner.store.retained_set(msg);
        }
    }

    /// Routes `msg` to every matching session; `routes` is a reusable scratch vector. Returns
    /// how many sessions it went to.
    pub(crate) fn route(&self, msg: &Arc<Message>, routes: &mut Vec<Route>) -> usize {
        // Read lock only while walking the trie: no `.await`, no session lock inside.
        self.inner
            .subs
            .read()
            .collect(&msg.topic, msg.origin, routes);
        let n = routes.len();
        for route in routes.drain(..) {
            let delivery = Delivery {
                msg: Arc::clone(msg),
                qos: msg.qos.min(route.qos),
                retain: route.retain_as_published && msg.retain,
                sub_ids: route.sub_ids,
            };
            self.deliver(&route.session, delivery);
        }
        n
    }

    /// Puts a delivery into a session's queue and wakes its connection.
    pub(crate) fn deliver(&self, session: &Session, delivery: Delivery) {
        // Only QoS 1/2 deliveries are reported to the store; keep the message for it.
        let durable = (delivery.qos != QoS::AtMostOnce).then(|| Arc::clone(&delivery.msg));
        let online = session.is_online();
        let result = session
            .lock()
            .enqueue(delivery, online, self.queue_limits());
        match result {
            Ok(()) => {
                if let Some(msg) = durable {
                    self.inner.store.message_queued(&session.client_id, &msg);
                }
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
    pub(crate) fn assign_client_id(&self) -> ByteString {
        let n = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        format!("sb-{:x}-{n:x}", self.inner.boot_id & 0xffff_ffff).into()
    }

    /// Attaches a new connection to the session of `client_id`: takes over a live one (the old
    /// connection is kicked and waited for), resumes a stored one unless `clean_start`, or
    /// creates one.
    pub(crate) async fn attach(
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
                        let attached = self.attach_to(&session, true, expiry);
                        drop(registry);
                        self.inner.store.session_opened(client_id, expiry);
                        return attached;
                    }
                    (existing, _) => {
                        let session = Session::new_arc(
                            self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                            client_id.clone(),
                        );
                        let attached = self.attach_to(&session, false, expiry);
                        registry.insert(client_id.clone(), session);
                        drop(registry);
                        Metrics::add(&self.inner.metrics.sessions, 1);
                        if let Some(old) = existing {
                            self.discard(&old);
                        }
                        if expiry > 0 {
                            self.inner.store.session_opened(client_id, expiry);
                        }
                        return attached;
                    }
                }
            };
            // [MQTT-3.1.4-3]: a live connection with this client id is closed first.
            let (generation, kick, closed) = wait;
            kick.cancel();
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
        let kick = CancellationToken::new();
        let mut state = session.lock();
        if let Some(timer) = state.expiry.take() {
            timer.cancel();
        }
        // [MQTT-3.1.3-9] a delayed will is withdrawn when the client reconnects in time.
        if let Some((timer, _)) = state.pending_will.take() {
            timer.cancel();
        }
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
        }
    }

    /// Detaches a closing connection. Publishes the will now, or after its delay; ends the
    /// session now (expiry 0) or arms its expiry timer.
    pub(crate) fn detach(
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
                self.publish_arc(&will);
            } else {
                self.delay_will(session, will, delay);
            }
        }
        if expiry == 0 {
            self.end_if_idle(session);
        } else if expiry != u32::MAX {
            self.arm_expiry(session, expiry);
        }
        closed.cancel();
    }

    fn publish_arc(&self, msg: &Arc<Message>) {
        if msg.retain {
            self.retain(msg);
        }
        self.route(msg, &mut Vec::new());
    }

    fn delay_will(&self, session: &Arc<Session>, will: Arc<Message>, delay: u32) {
        let timer = CancellationToken::new();
        if let Some((old, _)) = session.lock().pending_will.replace((timer.clone(), will)) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(delay.into())) => {
                    let will = session.lock().pending_will.take_if(|(t, _)| !t.is_cancelled());
                    if let Some((_, will)) = will {
                        broker.publish_arc(&will);
                    }
                }
            }
        });
    }

    fn arm_expiry(&self, session: &Arc<Session>, expiry: u32) {
        let timer = CancellationToken::new();
        if let Some(old) = session.lock().expiry.replace(timer.clone()) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(expiry.into())) => {
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
            self.publish_arc(&will);
        }
        Metrics::sub(&self.inner.metrics.sessions, 1);
        self.inner.store.session_ended(&session.client_id);
    }

    /// Adds a subscription to the trie; true when it replaced an existing one.
    pub(crate) fn subscribe(&self, filter: &str, sub: Subscriber) -> bool {
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
    pub(crate) fn unsubscribe(&self, filter: &str, key: u64) -> bool {
        let (group, filter) = split_shared(filter);
        let mut trie = self.inner.subs.write();
        let removed = trie.remove(group, filter, key);
        self.inner
            .metrics
            .subscriptions
            .store(trie.len() as u64, Ordering::Relaxed);
        removed
    }

    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    fn authorizer(&self) -> &dyn Authorizer {
        &*self.inner.authorizer
    }

    /// Refreshes the retained `$SYS/broker/...` topics every `sys_interval` seconds until
    /// `shutdown`; returns at once when the interval is 0.
    pub async fn run_sys(&self, shutdown: CancellationToken) {
        sys::run(self, shutdown).await;
    }
}

/// Splits `$share/<group>/<filter>` into the group and the filter; other filters have no group.
pub(crate) fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(filter) {
        Ok(Some(shared)) => (Some(shared.group), shared.filter),
        _ => (None, filter),
    }
}
