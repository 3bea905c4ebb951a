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
}
