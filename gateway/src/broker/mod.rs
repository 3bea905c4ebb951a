//! The MQTT 3.1.1 / 5.0 broker.
//!
//! [`Broker`] holds the shared state (session registry, subscription trie, retained messages,
//! counters) and serves one connection at a time per task through
//! [`Broker::serve_connection`], which is generic over the byte stream so TCP, TLS and WebSocket
//! run the same code.
//!
//! # Concurrency model
//! * Every connection is one tokio task that owns its socket, its read buffer, its write
//!   buffer and its protocol state ([`conn`]).
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
//! ([`RedbStore`], `persist/`) commits them in groups on its own thread; a connection writes
//! the PUBACK/PUBREC/PUBCOMP (or the PUBLISH/PUBREL whose state it recorded) only once the
//! commit of its changes is done, and keeps reading meanwhile. [`Broker::with_parts`] restores the store's content (sessions in
//! the registry and the trie) before any listener accepts.

mod admin;
mod conn;
mod enhanced_auth;
mod lifecycle;
mod metrics;
mod persist;
mod router;
mod routing;
mod session;
mod settings;
mod store;
mod sys;
mod trie;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use switchboard_mqtt::{ByteString, Bytes, QoS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use self::admin::{
    ClientSummary, InternalMessage, InternalSubscriber, RetainedSummary, SessionSummary,
};
pub use self::metrics::{COMMIT_BUCKETS, Histogram, Metrics};
pub use self::persist::{DurabilityMode, RedbStore, StoreConfig};
pub use self::session::Message;
pub use self::settings::BrokerConfig;
pub use self::store::{
    CommitObserver, MemoryStore, QueuedMessage, Restored, RestoredDelivery, RestoredSession, Store,
    StoreError, Ticket,
};
pub use crate::security::{Authorizer, ClientInfo, ConfigAuthorizer, Transport};
use crate::security::{ConnectionMeta, Security};

use self::router::Durability;
pub(crate) use self::routing::split_shared;
use self::session::Session;
use self::trie::SubTrie;

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
    /// SCRAM is refused with CONNACK 0x8C). Open connections of users that were removed, or
    /// whose password changed, are cut (v5: DISCONNECT 0x87).
    pub fn set_scram_credentials(&self, credentials: Option<Arc<crate::scram::Credentials>>) {
        *self.inner.scram.write() = credentials;
        self.cut_revoked();
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
