//! What the readers record. Each reader keeps its own records (no lock on
//! the hot path); they are merged once the window is over.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How a read was served, from its `X-Cache` header and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Hit,
    /// Grace mode: the previous value, while a refresh runs.
    Stale {
        /// The `Age` header, whole seconds, when present.
        age: Option<u64>,
    },
    Miss,
    /// 2xx without a known `X-Cache` value.
    Unmarked,
    /// A status other than 2xx.
    Failed(u16),
    /// No answer (connection refused or reset, timeout).
    Error,
}

impl Served {
    pub fn from_response(status: u16, x_cache: Option<&str>, age: Option<&str>) -> Served {
        if !(200..300).contains(&status) {
            return Served::Failed(status);
        }
        match x_cache.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("hit") => Served::Hit,
            Some(v) if v.eq_ignore_ascii_case("stale") => Served::Stale {
                age: age.and_then(|a| a.trim().parse().ok()),
            },
            Some(v) if v.eq_ignore_ascii_case("miss") => Served::Miss,
            _ => Served::Unmarked,
        }
    }
}

/// Latencies are recorded in microseconds, from 1 µs to 5 minutes.
pub const LATENCY_MAX_US: u64 = 300_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // Bounds and 3 significant figures are constants that hdrhistogram
    // accepts, so this cannot fail.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).unwrap_or_else(|_| unreachable!())
}

/// One reader's records of the measured window.
pub struct ReaderRecord {
    pub latency: Histogram<u64>,
    pub counts: Counts,
    /// Per second of the window: counts and the raw latencies (µs) for
    /// that second's percentiles.
    pub seconds: Vec<(Counts, Vec<u32>)>,
}

impl Default for ReaderRecord {
    fn default() -> Self {
        ReaderRecord {
            latency: new_histogram(),
            counts: Counts::default(),
            seconds: Vec::new(),
        }
    }
}

/// Reads by how they were served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub reads: u64,
    pub hits: u64,
    pub stale: u64,
    pub misses: u64,
    pub unmarked: u64,
    /// Non-2xx answers by status, and `0` for no answer.
    pub failed: BTreeMap<u16, u64>,
    /// Largest and summed `Age` of the stale answers that had one.
    pub age_max_s: u64,
    pub age_sum_s: u64,
    pub aged: u64,
}

impl Counts {
    pub fn add(&mut self, served: Served) {
        self.reads += 1;
        match served {
            Served::Hit => self.hits += 1,
            Served::Stale { age } => {
                self.stale += 1;
                if let Some(age) = age {
                    self.age_max_s = self.age_max_s.max(age);
                    self.age_sum_s += age;
                    self.aged += 1;
                }
            }
            Served::Miss => self.misses += 1,
            Served::Unmarked => self.unmarked += 1,
            Served::Failed(status) => *self.failed.entry(status).or_default() += 1,
            Served::Error => *self.failed.entry(0).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.reads += other.reads;
        self.hits += other.hits;
        self.stale += other.stale;
        self.misses += other.misses;
        self.unmarked += other.unmarked;
        for (status, n) in &other.failed {
            *self.failed.entry(*status).or_default() += n;
        }
        self.age_max_s = self.age_max_s.max(other.age_max_s);
        self.age_sum_s += other.age_sum_s;
        self.aged += other.aged;
    }

    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

impl ReaderRecord {
    /// A read that completed `second` whole seconds into the window.
    pub fn record(&mut self, second: usize, latency_us: u64, served: Served) {
        let latency_us = latency_us.clamp(1, LATENCY_MAX_US);
        // Clamped into the histogram's bounds above: cannot fail.
        let _ = self.latency.record(latency_us);
        self.counts.add(served);
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Default::default);
        }
        let (counts, latencies) = &mut self.seconds[second];
        counts.add(served);
        latencies.push(u32::try_from(latency_us).unwrap_or(u32::MAX));
    }
}

/// One second of the window, over all readers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondFigures {
    pub second: usize,
    pub reads: u64,
    /// Fresh hits / reads, percent.
    pub hit_rate: f64,
    /// (hits + stale) / reads, percent: answered from the cache.
    pub served_from_cache: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The merged records of all readers.
pub struct Merged {
    pub latency: Histogram<u64>,
    pub counts: Counts,
    pub seconds: Vec<SecondFigures>,
}

pub fn merge(records: Vec<ReaderRecord>, window_seconds: usize) -> Merged {
    let mut latency = new_histogram();
    let mut counts = Counts::default();
    let mut per_second: Vec<(Counts, Vec<u32>)> = Vec::new();
    per_second.resize_with(window_seconds, Default::default);
    for record in records {
        // Same bounds on both sides: cannot fail.
        let _ = latency.add(&record.latency);
        counts.merge(&record.counts);
        for (second, (c, lat)) in record.seconds.into_iter().enumerate() {
            if second >= per_second.len() {
                per_second.resize_with(second + 1, Default::default);
            }
            per_second[second].0.merge(&c);
            per_second[second].1.extend(lat);
        }
    }
    let seconds = per_second
        .into_iter()
        .enumerate()
        .map(|(second, (c, mut lat))| {
            lat.sort_unstable();
            SecondFigures {
                second,
                reads: c.reads,
                hit_rate: percent(c.hits, c.reads),
                served_from_cache: percent(c.hits + c.stale, c.reads),
                p50_ms: quantile_ms(&lat, 0.50),
                p99_ms: quantile_ms(&lat, 0.99),
            }
        })
        .collect();
    Merged {
        latency,
        counts,
        seconds,
    }
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The `q` quantile of sorted latencies in µs, in ms (nearest rank).
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::{ReaderRecord, Served, merge, quantile_ms};

    #[test]
    fn served_comes_from_status_and_x_cache() {
        assert_eq!(Served::from_response(200, Some("hit"), None), Served::Hit);
        assert_eq!(Served::from_response(200, Some("MISS"), None), Served::Miss);
        assert_eq!(
            Served::from_response(200, Some("stale"), Some("3")),
            Served::Stale { age: Some(3) }
        );
        assert_eq!(Served::from_response(200, None, None), Served::Unmarked);
        assert_eq!(
            Served::from_response(503, Some("miss"), None),
            Served::Failed(503)
        );
    }

    #[test]
    fn readers_merge_per_second() {
        let mut a = ReaderRecord::default();
        a.record(0, 1_000, Served::Hit);
        a.record(1, 3_000, Served::Miss);
        let mut b = ReaderRecord::default();
        b.record(0, 2_000, Served::Stale { age: Some(4) });
        b.record(0, 9_000, Served::Failed(500));
        let m = merge(vec![a, b], 3);
        assert_eq!(m.counts.reads, 4);
        assert_eq!(m.counts.failures(), 1);
        assert_eq!(m.counts.age_max_s, 4);
        assert_eq!(m.seconds.len(), 3);
        assert_eq!(m.seconds[0].reads, 3);
        assert!((m.seconds[0].hit_rate - 100.0 / 3.0).abs() < 1e-9);
        assert!((m.seconds[0].served_from_cache - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(m.seconds[0].p99_ms, 9.0);
        assert_eq!(m.seconds[2].reads, 0);
        assert_eq!(m.latency.len(), 4);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let lat: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&lat, 0.5), 50.0);
        assert_eq!(quantile_ms(&lat, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
