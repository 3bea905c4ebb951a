//! Broker counters: one set of relaxed atomics, updated on the hot paths, read by the `$SYS`
//! publisher (and later by metrics export).

use std::sync::atomic::{AtomicU64, Ordering};

/// Broker-wide counters. All are monotonic except the gauges named so.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Gauge: connections with a session attached.
    pub clients_connected: AtomicU64,
    /// Gauge: sessions (connected or not).
    pub sessions: AtomicU64,
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: AtomicU64,
    /// Bytes read from client sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_sent: AtomicU64,
    /// Messages dropped (full queues, QoS 0 to offline sessions, too large for the client,
    /// expired).
    pub messages_dropped: AtomicU64,
    /// Gauge: subscriptions in the index (updated by the broker under the trie's write lock).
    pub subscriptions: AtomicU64,
    /// Gauge: retained messages.
    pub retained: AtomicU64,
    /// Durable messages the store refused because it reached `[store] max_bytes` (each also
    /// counted in `messages_dropped` when it was meant for a session).
    pub store_rejected: AtomicU64,
    /// PUBLISH packets received from clients, by QoS (index 0, 1, 2). Their sum is
    /// `messages_received`.
    pub messages_received_by_qos: [AtomicU64; 3],
    /// PUBLISH packets sent to clients, by QoS (index 0, 1, 2). Their sum is `messages_sent`.
    pub messages_sent_by_qos: [AtomicU64; 3],
    /// WebSocket upgrades accepted (`101`).
    pub ws_handshakes: AtomicU64,
    /// WebSocket upgrade requests refused (bad handshake, origin, connection limit).
    pub ws_rejections: AtomicU64,
    /// MQTT authentication failures (CONNACK 0x86/0x87, v3 0x04/0x05). Bumped by the
    /// authentication code through [`Metrics::auth_failed`].
    pub auth_failures: AtomicU64,
    /// HTTP API requests refused for a missing or wrong API key.
    pub api_auth_failures: AtomicU64,
    /// Latency of durable store commits, recorded by the store through
    /// [`Metrics::observe_commit`].
    pub store_commit: Histogram,
}

/// Upper bounds, in seconds, of the [`Histogram`] buckets (the `+Inf` bucket is implicit).
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with the fixed [`COMMIT_BUCKETS`], lock-free: one relaxed atomic per
/// bucket (not cumulative; the exporter sums them), a count and a sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: std::time::Duration) {
        let secs = value.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket of [`COMMIT_BUCKETS`], then `+Inf`; the observation count;
    /// the sum in seconds.
    #[must_use]
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, self.count.load(Ordering::Relaxed), sum)
    }
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records how long one durable store commit took (for the persistence engine).
    pub fn observe_commit(&self, duration: std::time::Duration) {
        self.store_commit.observe(duration);
    }

    /// Counts one failed MQTT authentication (for the security code).
    pub fn auth_failed(&self) {
        Self::add(&self.auth_failures, 1);
    }

    /// Reads a counter or gauge (relaxed).
    #[must_use]
    pub fn value(counter: &AtomicU64) -> u64 {
        Self::get(counter)
    }
}
