//! A histogram of durations in fixed memory: counts in 1-2-5 buckets from
//! 1 ms to one hour, and the sum. Lock-free (relaxed atomics: statistics,
//! not synchronisation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in milliseconds; a last bucket holds
/// everything longer than one hour.
pub(crate) const BOUNDS_MS: [u64; 23] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    u64::MAX,
];

#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS_MS.len()],
    sum_ms: AtomicU64,
}

impl Histogram {
    pub fn record(&self, value: Duration) {
        let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MS.partition_point(|&bound| bound < ms);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub counts: [u64; BOUNDS_MS.len()],
    pub sum_ms: u64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn mean_ms(&self) -> u64 {
        self.sum_ms.checked_div(self.count()).unwrap_or(0)
    }

    /// The `q` quantile (0..=1), interpolated within its bucket; 0 when
    /// empty. Past the last finite bound it answers that bound.
    pub fn quantile_ms(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (seen + n) as f64 >= rank {
                let low = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
                let Some(&high) = BOUNDS_MS.get(i).filter(|b| **b != u64::MAX) else {
                    return low;
                };
                let within = (rank - seen as f64) / n as f64;
                return low + ((high - low) as f64 * within).round() as u64;
            }
            seen += n;
        }
        0
    }

    /// How many values were at most `limit_ms`, counting a bucket whose
    /// upper bound is at most the limit: an exact count when the limit is a
    /// bound ([`BOUNDS_MS`]), a lower bound otherwise.
    pub fn at_most(&self, limit_ms: u64) -> u64 {
        BOUNDS_MS
            .iter()
            .zip(self.counts)
            .take_while(|(bound, _)| **bound <= limit_ms)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_of_their_upper_bound() {
        let h = Histogram::default();
        for ms in [0, 1, 2, 3, 9_000, 10_000, 10_001, 7_200_000] {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.counts[0], 2, "0 and 1 ms");
        assert_eq!(s.counts[1], 1, "2 ms");
        assert_eq!(s.counts[2], 1, "3 ms");
        assert_eq!(s.counts[12], 2, "9 s and 10 s");
        assert_eq!(s.counts[13], 1, "10.001 s");
        assert_eq!(s.counts[22], 1, "two hours");
        assert_eq!(s.count(), 8);
        assert_eq!(s.at_most(10_000), 6);
        assert_eq!(s.at_most(15_000), 7);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        for _ in 0..100 {
            h.record(Duration::from_millis(7_000));
        }
        let s = h.snapshot();
        // All in (5 s, 10 s]: the median is placed half-way.
        assert_eq!(s.quantile_ms(0.5), 7_500);
        assert_eq!(s.quantile_ms(1.0), 10_000);
        assert_eq!(s.mean_ms(), 7_000);
        assert_eq!(Snapshot::default().quantile_ms(0.5), 0);
    }
}
