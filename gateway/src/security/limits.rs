//! Abuse limits: connections per source address, failed-login back-off per source address and
//! user name, turns for slow password checks, and a per-connection publish rate (token
//! bucket). The concurrent handshake limit is a plain semaphore in [`super::Security`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

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

/// Most (address, user name) pairs tracked; when full, the stalest entries are evicted.
const BACKOFF_MAX_ENTRIES: usize = 8192;

/// Failed logins per source address and user name: after `n` consecutive failures the next
/// attempt for that pair waits `min(base * 2^(n-1), max)` after the last failure before its
/// password is checked. A success clears only its own pair, so an attacker's own account does
/// not reset the guessing against another. Entries are forgotten after `max * 4` without
/// failures; the table is bounded (user names are kept as a keyed 64-bit hash, so its size
/// does not depend on what clients send).
#[derive(Debug)]
pub struct LoginBackoff {
    base: Duration,
    max: Duration,
    keys: std::hash::RandomState,
    /// Failures and the time of the last one. Lock held for a map update only.
    table: Mutex<HashMap<(IpAddr, u64), (u32, Instant)>>,
}

impl LoginBackoff {
    /// A back-off starting at `base`, capped at `max` (`base` zero disables it).
    #[must_use]
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            keys: std::hash::RandomState::new(),
            table: Mutex::default(),
        }
    }

    fn key(&self, ip: IpAddr, user: Option<&str>) -> (IpAddr, u64) {
        use std::hash::BuildHasher as _;
        (ip.to_canonical(), self.keys.hash_one(user))
    }

    fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        (self.base * (1u32 << shift)).min(self.max)
    }

    /// How long the next login of `user` from `ip` must wait before its password is checked.
    #[must_use]
    pub fn wait(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let key = self.key(ip, user);
        let table = self.table.lock();
        match table.get(&key) {
            Some(&(failures, at)) if now.duration_since(at) < self.max * 4 => {
                (at + self.delay(failures)).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed login of `user` from `ip` at `now`; returns how long the next attempt
    /// will wait.
    pub fn failed(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let forget = self.max * 4;
        let key = self.key(ip, user);
        let mut table = self.table.lock();
        if table.len() >= BACKOFF_MAX_ENTRIES && !table.contains_key(&key) {
            table.retain(|_, (_, at)| now.duration_since(*at) < forget);
            if table.len() >= BACKOFF_MAX_ENTRIES {
                // Under a spray of addresses or names, evict the oldest half.
                let mut times: Vec<Instant> = table.values().map(|(_, at)| *at).collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                table.retain(|_, (_, at)| *at > cut);
            }
        }
        let entry = table.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= forget {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        self.delay(entry.0)
    }

    /// Forgets the failures of `user` from `ip` (and of no one else).
    pub fn succeeded(&self, ip: IpAddr, user: Option<&str>) {
        if self.base.is_zero() {
            return;
        }
        let key = self.key(ip, user);
        self.table.lock().remove(&key);
    }

    /// How many (address, user) pairs are tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether nothing is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Password checks are slow and memory-hungry on purpose (argon2id takes 19 MiB each), so
/// they take turns: at most `parallel` run at once, and one source address has one turn at a
/// time, so guesses from one address queue behind each other (and behind their back-off)
/// instead of holding every slot. Both queues are FIFO and bounded by the caller's deadline.
#[derive(Debug)]
pub struct HashGate {
    parallel: Arc<Semaphore>,
    /// One single-permit queue per address with a check running or waiting; removed when
    /// the last turn for the address ends. Lock held for a map update only.
    per_address: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    /// Turns held or awaited right now.
    waiting: AtomicUsize,
    /// Most checks that ran at once.
    peak: AtomicUsize,
    running: AtomicUsize,
}

impl HashGate {
    /// A gate for `parallel` checks at once (at least 1).
    #[must_use]
    pub fn new(parallel: usize) -> Self {
        Self {
            parallel: Arc::new(Semaphore::new(parallel.max(1))),
            per_address: Mutex::default(),
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        }
    }

    /// Waits for `ip`'s turn, until `deadline`; `None` when it did not come in time.
    pub async fn turn(
        self: &Arc<Self>,
        ip: IpAddr,
        deadline: tokio::time::Instant,
    ) -> Option<HashTurn> {
        let ip = ip.to_canonical();
        let queue = Arc::clone(
            self.per_address
                .lock()
                .entry(ip)
                .or_insert_with(|| Arc::new(Semaphore::new(1))),
        );
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut turn = HashTurn {
            gate: Arc::clone(self),
            ip,
            queue,
            address: None,
        };
        let address = tokio::time::timeout_at(deadline, Arc::clone(&turn.queue).acquire_owned())
            .await
            .ok()?
            .ok()?;
        turn.address = Some(address);
        Some(turn)
    }

    /// Turns held or awaited now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The most checks that ever ran at once.
    #[must_use]
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// An address's turn at the [`HashGate`]; [`HashTurn::check`] runs the slow part.
#[derive(Debug)]
pub struct HashTurn {
    gate: Arc<HashGate>,
    ip: IpAddr,
    queue: Arc<Semaphore>,
    address: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl HashTurn {
    /// Runs `check` on the blocking pool once one of the `parallel` slots is free (FIFO),
    /// or `None` when none came before `deadline`.
    pub async fn check<T: Send + 'static>(
        &mut self,
        deadline: tokio::time::Instant,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&self.gate.parallel).acquire_owned())
                .await
                .ok()?
                .ok()?;
        let now = self.gate.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.gate.peak.fetch_max(now, Ordering::Relaxed);
        // The permit moves into the blocking task: if this future is dropped (the client went
        // away), the slot stays taken until the check really ends.
        let gate = Arc::clone(&self.gate);
        tokio::task::spawn_blocking(move || {
            let out = check();
            gate.running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            out
        })
        .await
        .ok()
    }
}

impl Drop for HashTurn {
    fn drop(&mut self) {
        drop(self.address.take());
        self.gate.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.gate.per_address.lock();
        // The map's reference and ours: nobody else waits for this address.
        if Arc::strong_count(&self.queue) == 2 {
            map.remove(&self.ip);
        }
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
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(b.wait(ip, Some("alice"), t), Duration::ZERO);
        assert_eq!(b.failed(ip, Some("alice"), t), ms(100));
        assert_eq!(b.wait(ip, Some("alice"), t + ms(40)), ms(60));
        assert_eq!(b.wait(ip, Some("alice"), t + ms(100)), Duration::ZERO);
        assert_eq!(b.failed(ip, Some("alice"), t), ms(200));
        assert_eq!(b.failed(ip, Some("alice"), t), ms(350));
        assert_eq!(b.failed(ip, Some("alice"), t), ms(350));
        // Another user from the same address, and the same user from elsewhere, are not held.
        assert_eq!(b.wait(ip, Some("mallory"), t), Duration::ZERO);
        assert_eq!(b.wait(ip, None, t), Duration::ZERO);
        assert_eq!(
            b.wait("10.0.0.2".parse().unwrap(), Some("alice"), t),
            Duration::ZERO
        );
        // The attacker's own account succeeding does not reset alice's back-off.
        b.succeeded(ip, Some("mallory"));
        assert_eq!(b.wait(ip, Some("alice"), t), ms(350));
        b.succeeded(ip, Some("alice"));
        assert_eq!(b.failed(ip, Some("alice"), t), ms(100));
        // Forgotten after max * 4 without failures.
        assert_eq!(b.wait(ip, Some("alice"), t + ms(1400)), Duration::ZERO);
        for i in 0..(BACKOFF_MAX_ENTRIES as u32 + 100) {
            let _ = b.failed(IpAddr::from(i.to_be_bytes()), Some("x"), t);
        }
        assert!(b.len() <= BACKOFF_MAX_ENTRIES);
        for i in 0..(BACKOFF_MAX_ENTRIES + 100) {
            let _ = b.failed(ip, Some(&i.to_string()), t);
        }
        assert!(b.len() <= BACKOFF_MAX_ENTRIES);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hash_gate_bounds_checks_and_gives_each_address_one_turn() {
        let gate = Arc::new(HashGate::new(2));
        let soon = || tokio::time::Instant::now() + Duration::from_secs(5);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let gate = Arc::clone(&gate);
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            // Six addresses, four checks each.
            let ip = IpAddr::from([10, 0, 0, i % 6]);
            tasks.push(tokio::spawn(async move {
                let mut turn = gate.turn(ip, soon()).await.expect("turn");
                turn.check(soon(), move || {
                    let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .expect("checked");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(gate.peak(), 2);
        assert_eq!(gate.waiting(), 0);
        assert!(gate.per_address.lock().is_empty(), "queues are removed");

        // While one address holds its turn, its next check waits (and gives up at the
        // deadline); another address goes ahead.
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held = gate.turn(ip, soon()).await.unwrap();
        let short = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(gate.turn(ip, short).await.is_none());
        let mut other = gate
            .turn("10.0.0.2".parse().unwrap(), soon())
            .await
            .unwrap();
        assert_eq!(other.check(soon(), || 7).await, Some(7));
        drop((held, other));
        assert_eq!(gate.waiting(), 0);
        assert!(gate.per_address.lock().is_empty());
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
