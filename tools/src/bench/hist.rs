//! A log-linear latency histogram: 64 buckets per power of two (under 1.6 % error), recording in
//! a few instructions, mergeable across connections. Values are nanoseconds.

/// Sub-buckets per power of two (6 bits).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Values up to 2^40 ns (18 minutes) are kept apart; larger ones share the last bucket.
const MAX_MSB: u32 = 40;
const BUCKETS: usize = SUB * (MAX_MSB - SUB_BITS + 2) as usize;

/// Latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < (2 * SUB) as u64 {
        return v as usize;
    }
    let msb = (63 - v.leading_zeros()).min(MAX_MSB);
    let shift = msb - SUB_BITS;
    let top = ((v >> shift) as usize).min(2 * SUB - 1);
    SUB * shift as usize + top
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let top = (i % SUB + SUB) as u64;
    (top << shift) + (1 << shift) / 2
}

impl Histogram {
    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    #[must_use]
    pub const fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0 to 1); 0 when empty.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 0..100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 49);
        assert_eq!(h.quantile(0.99), 98);
        assert_eq!(h.max(), 99);
    }

    #[test]
    fn relative_error_is_small_and_indices_are_monotonic() {
        let mut last = 0;
        let mut v = 1u64;
        while v < 1 << 45 {
            let i = index(v);
            assert!(i >= last && i < BUCKETS);
            last = i;
            if v < 1 << 40 {
                let err = (value(i) as f64 - v as f64).abs() / v as f64;
                assert!(err < 0.016, "{v}: {err}");
            }
            v = v * 9 / 8 + 1;
        }
    }

    #[test]
    fn merge_and_quantiles() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for _ in 0..99 {
            a.record(1_000_000);
        }
        b.record(50_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!((a.quantile(0.5) as f64 / 1e6 - 1.0).abs() < 0.02);
        assert_eq!(a.quantile(1.0), 50_000_000);
        assert_eq!(a.max(), 50_000_000);
    }
}
