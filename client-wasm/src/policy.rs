//! The client's policies as plain Rust, without web-sys: reconnect back-off, broker URL
//! rotation, the offline publish queue and client ids.
//!
//! The browser driver (`Client` (wasm32)) asks these types what to do next and feeds them the
//! time (a [`Duration`] on any monotonic clock) and randomness; nothing here reads a clock, so
//! the tests below drive them with virtual time.

use std::collections::VecDeque;
use std::time::Duration;

use switchboard_mqtt::QoS;

/// Exponential back-off with full jitter (AWS architecture blog, "Exponential Backoff And
/// Jitter"): the n-th retry waits a uniformly random time in `[0, min(max, base * 2^n)]`. The
/// exponent goes back to zero once a connection has stayed up for the stable period, so one
/// flap after hours of uptime retries quickly.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    stable: Duration,
    attempt: u32,
    connected_at: Option<Duration>,
}

impl Backoff {
    /// Back-off starting at `base`, capped at `max`, reset after `stable` of uptime.
    #[must_use]
    pub const fn new(base: Duration, max: Duration, stable: Duration) -> Self {
        Self {
            base,
            max,
            stable,
            attempt: 0,
            connected_at: None,
        }
    }

    /// Retries made since the last reset.
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay: `min(max, base * 2^attempt)`.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; `jitter` is a uniform random number in `[0, 1)`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// A connection was established (CONNACK accepted) at `now`.
    pub const fn on_connected(&mut self, now: Duration) {
        self.connected_at = Some(now);
    }

    /// The established connection was lost at `now`: resets the exponent when it had been up
    /// for the stable period.
    pub fn on_disconnected(&mut self, now: Duration) {
        if let Some(since) = self.connected_at.take()
            && now.saturating_sub(since) >= self.stable
        {
            self.attempt = 0;
        }
    }
}

/// Which of several broker URLs to try next. After an established connection is lost the same
/// URL is tried first; each failed attempt moves to the next URL at once, and only when every
/// URL has failed in a row (a "round") does the caller wait for the back-off.
#[derive(Debug, Clone)]
pub struct UrlRotation {
    len: usize,
    current: usize,
    failures_in_round: usize,
    rounds_failed: u32,
}

impl UrlRotation {
    /// Rotation over `len` URLs (at least one), starting with the first.
    #[must_use]
    pub fn new(len: usize) -> Self {
        Self {
            len: len.max(1),
            current: 0,
            failures_in_round: 0,
            rounds_failed: 0,
        }
    }

    /// Index of the URL to try now.
    #[must_use]
    pub const fn current(&self) -> usize {
        self.current
    }

    /// Whole rounds that failed since the last successful connection.
    #[must_use]
    pub const fn rounds_failed(&self) -> u32 {
        self.rounds_failed
    }

    /// The attempt on the current URL failed (no CONNACK). Moves to the next URL and returns
    /// `true` when that completed a round of failures (the caller then backs off).
    pub fn on_failure(&mut self) -> bool {
        self.current = (self.current + 1) % self.len;
        self.failures_in_round += 1;
        if self.failures_in_round >= self.len {
            self.failures_in_round = 0;
            self.rounds_failed = self.rounds_failed.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// A connection on the current URL was accepted.
    pub const fn on_connected(&mut self) {
        self.failures_in_round = 0;
        self.rounds_failed = 0;
    }
}

/// What happened to a publication offered to the [`OfflineQueue`].
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Kept until the connection is back or its deadline passes.
    Queued,
    /// Not kept: QoS 0 while offline, or the queue is full. The item comes back so the caller
    /// can report the outcome.
    Dropped(T),
}

/// Publications made while offline. QoS 0 is dropped at once (a stale "turn on" is worse than
/// none for a switch); QoS 1 and 2 wait until their deadline, then expire instead of being
/// replayed late.
#[derive(Debug)]
pub struct OfflineQueue<T> {
    items: VecDeque<(Duration, T)>,
    max_len: usize,
}

impl<T> OfflineQueue<T> {
    /// A queue holding at most `max_len` publications.
    #[must_use]
    pub const fn new(max_len: usize) -> Self {
        Self {
            items: VecDeque::new(),
            max_len,
        }
    }

    /// Number of queued publications.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Offers a publication of `qos` that must be sent before `deadline`.
    pub fn offer(&mut self, qos: QoS, deadline: Duration, item: T) -> Offer<T> {
        if qos == QoS::AtMostOnce || self.items.len() >= self.max_len {
            return Offer::Dropped(item);
        }
        self.items.push_back((deadline, item));
        Offer::Queued
    }

    /// The earliest deadline, for the driver's timer.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Duration> {
        self.items.iter().map(|(d, _)| *d).min()
    }

    /// Removes and returns, in order, the publications whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Duration) -> Vec<T> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for (deadline, item) in self.items.drain(..) {
            if deadline <= now {
                expired.push(item);
            } else {
                kept.push_back((deadline, item));
            }
        }
        self.items = kept;
        expired
    }

    /// The connection is back: removes everything, returning `(live, expired)` in order.
    pub fn drain(&mut self, now: Duration) -> (Vec<(Duration, T)>, Vec<T>) {
        let expired = self.expire(now);
        (self.items.drain(..).collect(), expired)
    }
}

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A random client id, `sb-` and 12 base-36 characters (about 62 bits), unique per tab.
/// `fill` fills a buffer with random bytes (`crypto.getRandomValues` in the browser); bytes of
/// 252 and above are skipped so every character is equally likely.
pub fn client_id(mut fill: impl FnMut(&mut [u8])) -> String {
    let mut id = String::with_capacity(15);
    id.push_str("sb-");
    let mut buf = [0u8; 16];
    while id.len() < 15 {
        fill(&mut buf);
        for &b in &buf {
            if b < 252 && id.len() < 15 {
                id.push(char::from(BASE36[usize::from(b % 36)]));
            }
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_full_jitter_bounds_double_and_cap() {
        let mut b = Backoff::new(MS * 500, MS * 8_000, MS * 10_000);
        let ceilings: Vec<_> = (0..7)
            .map(|_| {
                let c = b.ceiling();
                assert_eq!(b.clone().next_delay(0.0), Duration::ZERO);
                assert_eq!(b.clone().next_delay(1.0), c);
                let d = b.next_delay(0.5);
                assert_eq!(d, c / 2);
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 8000, 8000].map(|n| MS * n)
        );
        // Out-of-range jitter is clamped, huge exponents saturate.
        assert!(b.next_delay(7.0) <= MS * 8_000);
        b.attempt = 1_000;
        assert_eq!(b.ceiling(), MS * 8_000);
    }

    #[test]
    fn backoff_jitter_samples_stay_in_bounds() {
        let mut b = Backoff::new(MS * 100, MS * 3_000, MS * 10_000);
        let mut x: u32 = 12345;
        for _ in 0..1_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let jitter = f64::from(x >> 8) / f64::from(1u32 << 24);
            let ceiling = b.ceiling();
            let d = b.next_delay(jitter);
            assert!(d <= ceiling && ceiling <= MS * 3_000);
        }
    }

    #[test]
    fn backoff_resets_only_after_stable_period() {
        let mut b = Backoff::new(MS * 500, MS * 30_000, MS * 10_000);
        for _ in 0..4 {
            b.next_delay(0.5);
        }
        // Up for 2 s only: a flapping connection keeps its exponent.
        b.on_connected(MS * 1_000);
        b.on_disconnected(MS * 3_000);
        assert_eq!(b.attempt(), 4);
        // Up for exactly the stable period: back to the base.
        b.on_connected(MS * 5_000);
        b.on_disconnected(MS * 15_000);
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), MS * 500);
        // A disconnect without a connection changes nothing.
        b.next_delay(0.1);
        b.on_disconnected(MS * 99_000);
        assert_eq!(b.attempt(), 1);
    }

    #[test]
    fn url_rotation_tries_each_url_then_backs_off() {
        let mut r = UrlRotation::new(3);
        assert_eq!(r.current(), 0);
        assert!(!r.on_failure());
        assert_eq!(r.current(), 1);
        assert!(!r.on_failure());
        assert_eq!(r.current(), 2);
        assert!(r.on_failure(), "third failure completes a round");
        assert_eq!(r.current(), 0);
        assert_eq!(r.rounds_failed(), 1);
        // The backup (index 1) takes over; after losing it we retry it first.
        assert!(!r.on_failure());
        r.on_connected();
        assert_eq!((r.current(), r.rounds_failed()), (1, 0));
        assert!(!r.on_failure());
        assert_eq!(r.current(), 2);
    }

    #[test]
    fn url_rotation_single_url_every_failure_is_a_round() {
        let mut r = UrlRotation::new(1);
        assert!(r.on_failure());
        assert!(r.on_failure());
        assert_eq!((r.current(), r.rounds_failed()), (0, 2));
        assert_eq!(UrlRotation::new(0).current(), 0);
    }

    #[test]
    fn offline_queue_drops_qos0_and_expires_stale() {
        let mut q = OfflineQueue::new(10);
        assert_eq!(
            q.offer(QoS::AtMostOnce, MS * 100, "q0"),
            Offer::Dropped("q0")
        );
        assert_eq!(q.offer(QoS::AtLeastOnce, MS * 5_000, "a"), Offer::Queued);
        assert_eq!(q.offer(QoS::ExactlyOnce, MS * 3_000, "b"), Offer::Queued);
        assert_eq!(q.offer(QoS::AtLeastOnce, MS * 9_000, "c"), Offer::Queued);
        assert_eq!(q.next_deadline(), Some(MS * 3_000));
        assert!(q.expire(MS * 2_999).is_empty());
        assert_eq!(q.expire(MS * 3_000), ["b"]);
        assert_eq!(q.next_deadline(), Some(MS * 5_000));
        assert_eq!(q.len(), 2);
        // Reconnect at 6 s: "a" is stale and never replayed, "c" goes out.
        let (live, expired) = q.drain(MS * 6_000);
        assert_eq!(live, [(MS * 9_000, "c")]);
        assert_eq!(expired, ["a"]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn offline_queue_is_bounded() {
        let mut q = OfflineQueue::new(2);
        assert_eq!(q.offer(QoS::AtLeastOnce, MS, 1), Offer::Queued);
        assert_eq!(q.offer(QoS::AtLeastOnce, MS, 2), Offer::Queued);
        assert_eq!(q.offer(QoS::ExactlyOnce, MS, 3), Offer::Dropped(3));
    }

    #[test]
    fn client_id_format_and_uniqueness() {
        let mut seed = 1u64;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
        };
        let ids: Vec<String> = (0..200).map(|_| client_id(&mut rng)).collect();
        for id in &ids {
            assert_eq!(id.len(), 15);
            assert!(id.starts_with("sb-"));
            assert!(
                id[3..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn client_id_skips_biased_bytes() {
        // 252..=255 would favour 0-3; they are skipped, so all-255 then all-35 gives "z"s.
        let mut calls = 0;
        let id = client_id(|buf| {
            calls += 1;
            buf.fill(if calls == 1 { 255 } else { 35 });
        });
        assert_eq!(id, "sb-zzzzzzzzzzzz");
        assert_eq!(calls, 2);
    }
}
