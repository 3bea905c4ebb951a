//! Abuse limits: connections per source address, failed-login back-off per source address,
//! and a per-connection publish rate (token bucket). The concurrent handshake limit is a plain
//! semaphore in [`super::Security`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Open connections per source address. The lock is held for a map update only.
#[derive(Debug, Default)]
pub struct AddressCounts {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressCounts {
    /// Takes a slot for `ip`, or `None` when it has `max` open (`max` 0: unlimited).
    pub fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressGuard> {
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressGuard {
            counts: Arc::clone(self),
            ip,
        })
    }
}

/// A connection's per-address slot; dropping it frees the slot.
#[derive(Debug)]
pub struct AddressGuard {
    counts: Arc<AddressCounts>,
    ip: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Most source addresses tracked; when full, the stalest entries are evicted.
const BACKOFF_MAX_ENTRIES: usize = 8192;

/// Failed logins per source address: the n-th consecutive failure waits
/// `min(base * 2^(n-1), max)` before its refusal is sent. Entries are forgotten after a
/// success or `max * 4` without failures; the table is bounded.
#[derive(Debug)]
pub struct LoginBackoff {
    base: Duration,
    max: Duration,
    /// Failures and the time of the last one. Lock held for a map update only.
    table: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginBackoff {
    /// A back-off starting at `base`, capped at `max` (`base` zero disables it).
    #[must_use]
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            table: Mutex::default(),
        }
    }

    /// Records a failure from `ip`; returns the delay before refusing.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let forget = self.max * 4;
        let mut table = self.table.lock();
        if table.len() >= BACKOFF_MAX_ENTRIES && !table.contains_key(&ip) {
            table.retain(|_, (_, at)| now.duration_since(*at) < forget);
            if table.len() >= BACKOFF_MAX_ENTRIES {
                // Under a spray of addresses, evict the oldest half.
                let mut times: Vec<Instant> = table.values().map(|(_, at)| *at).collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                table.retain(|_, (_, at)| *at > cut);
            }
        }
        let entry = table.entry(ip.to_canonical()).or_insert((0, now));
        if now.duration_since(entry.1) >= forget {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let shift = (entry.0 - 1).min(20);
        (self.base * (1u32 << shift)).min(self.max)
    }

    /// Forgets `ip`'s failures.
    pub fn succeeded(&self, ip: IpAddr) {
        if self.base.is_zero() {
            return;
        }
        self.table.lock().remove(&ip.to_canonical());
    }

    /// How many addresses are tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no address is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    #[must_use]
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_counts() {
        let counts = Arc::new(AddressCounts::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = counts.enter(ip, 2).unwrap();
        let _b = counts.enter(ip, 2).unwrap();
        assert!(counts.enter(ip, 2).is_none());
        assert!(counts.enter("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(counts.enter(ip, 2).is_some());
    }

    #[test]
    fn backoff_doubles_and_caps_and_is_bounded() {
        let b = LoginBackoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(b.failed(ip), Duration::from_millis(100));
        assert_eq!(b.failed(ip), Duration::from_millis(200));
        assert_eq!(b.failed(ip), Duration::from_millis(350));
        assert_eq!(b.failed(ip), Duration::from_millis(350));
        b.succeeded(ip);
        assert_eq!(b.failed(ip), Duration::from_millis(100));
        for i in 0..(BACKOFF_MAX_ENTRIES as u32 + 100) {
            let _ = b.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(b.len() <= BACKOFF_MAX_ENTRIES);
    }

    #[test]
    fn bucket() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0);
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(!bucket.take(start));
        assert!(bucket.take(start + Duration::from_millis(100)));
        assert!(!bucket.take(start + Duration::from_millis(100)));
    }
}
