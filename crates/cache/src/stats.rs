//! Counters kept by the cache itself (SPEC 1.4): hits and misses are this
//! service's own, not Redis' keyspace-wide figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Hits {
    hits: Striped,
    misses: Striped,
    stale: Striped,
}

/// A counter bumped on every read: spread over cache lines, one per thread
/// (modulo [`STRIPES`]), so that callers on different cores do not write to
/// one shared line on every in-process get (which moves the line between
/// cores at each increment). Reading sums the stripes.
#[derive(Default)]
pub(crate) struct Striped([Padded; STRIPES]);

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Striped {
    fn add(&self, n: u64) {
        use std::cell::Cell;
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        let stripe = STRIPE.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            s.get()
        });
        self.0[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// Live counters. Relaxed atomics: statistics, not synchronisation.
pub(crate) struct Counters {
    pub l1_hits: Striped,
    pub l2_hits: Striped,
    pub misses: Striped,
    pub sets: AtomicU64,
    pub deletes: AtomicU64,
    pub invalidations: AtomicU64,
    pub loader_runs: AtomicU64,
    pub errors: AtomicU64,
    pub skipped: AtomicU64,
    pub journaled: AtomicU64,
    pub compression_saved: AtomicU64,
    /// Graced reads served stale (`grace.rs`), the sum and the largest of
    /// the ages served, and the background refreshes started.
    pub stale: Striped,
    pub staleness_sum_ms: AtomicU64,
    pub staleness_max_ms: AtomicU64,
    pub refreshes: AtomicU64,
    /// Per key group (configured prefixes), then "other".
    groups: Vec<(String, Hits)>,
}

impl Counters {
    pub fn new(groups: &[String]) -> Self {
        let mut groups: Vec<(String, Hits)> = groups
            .iter()
            .map(|g| (g.clone(), Hits::default()))
            .collect();
        groups.push(("other".to_string(), Hits::default()));
        Counters {
            l1_hits: Striped::default(),
            l2_hits: Striped::default(),
            misses: Striped::default(),
            sets: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            loader_runs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            journaled: AtomicU64::new(0),
            compression_saved: AtomicU64::new(0),
            stale: Striped::default(),
            staleness_sum_ms: AtomicU64::new(0),
            staleness_max_ms: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            groups,
        }
    }

    fn group(&self, key: &str) -> &Hits {
        let last = self.groups.len() - 1;
        let prefixes = self.groups[..last]
            .iter()
            .map(|(prefix, _)| prefix.as_str());
        &self.groups[group_index(prefixes, key)].1
    }

    /// Each group's reads, named as `byType` names them.
    pub fn group_counts(&self) -> Vec<(String, GroupCounts)> {
        self.groups
            .iter()
            .map(|(name, h)| {
                let counts = GroupCounts {
                    hits: h.hits.get(),
                    misses: h.misses.get(),
                    stale: h.stale.get(),
                };
                (group_name(name), counts)
            })
            .collect()
    }

    pub fn hit(&self, key: &str, tier: Tier) {
        match tier {
            Tier::L1 => &self.l1_hits,
            Tier::L2 => &self.l2_hits,
        }
        .add(1);
        self.group(key).hits.add(1);
    }

    pub fn miss(&self, key: &str) {
        self.misses.add(1);
        self.group(key).misses.add(1);
    }

    /// A graced read served a value `age` old.
    pub fn stale(&self, key: &str, age: std::time::Duration) {
        self.stale.add(1);
        self.group(key).stale.add(1);
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.staleness_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.staleness_max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self, server: ServerFigures, circuit: &str, backend: &str) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let l1_hits = self.l1_hits.get();
        let l2_hits = self.l2_hits.get();
        let hits = l1_hits + l2_hits;
        let misses = self.misses.get();
        let stale = self.stale.get();
        CacheStats {
            hits,
            misses,
            hit_rate: hit_rate(hits, misses + stale),
            memory_used: server.memory_used,
            evicted_keys: server.evicted_keys,
            key_count: server.key_count,
            l1_hits,
            l2_hits,
            sets: get(&self.sets),
            deletes: get(&self.deletes),
            invalidations: get(&self.invalidations),
            loader_runs: get(&self.loader_runs),
            errors: get(&self.errors),
            skipped: get(&self.skipped),
            journaled: get(&self.journaled),
            compression_bytes_saved: get(&self.compression_saved),
            circuit: circuit.to_string(),
            backend: backend.to_string(),
            masters: server.masters,
            stale,
            staleness: Staleness {
                max_ms: get(&self.staleness_max_ms),
                mean_ms: get(&self.staleness_sum_ms).checked_div(stale).unwrap_or(0),
            },
            refreshes: get(&self.refreshes),
            by_type: self
                .group_counts()
                .into_iter()
                .map(|(name, c)| {
                    let stats = TypeStats {
                        hits: c.hits,
                        misses: c.misses,
                        stale: c.stale,
                        hit_rate: hit_rate(c.hits, c.misses + c.stale),
                    };
                    (name, stats)
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// In process: the embedded store (or, with Redis, the L1 tier).
    L1,
    /// Redis.
    L2,
}

/// What only the store can say about itself.
#[derive(Debug, Default)]
pub(crate) struct ServerFigures {
    pub memory_used: String,
    pub evicted_keys: u64,
    pub key_count: u64,
    pub masters: Vec<MasterStats>,
}

/// The group of `key`: the index of the first of `prefixes` it starts
/// with, else the number of prefixes ("other").
pub(crate) fn group_index<'a>(
    prefixes: impl ExactSizeIterator<Item = &'a str>,
    key: &str,
) -> usize {
    let other = prefixes.len();
    prefixes
        .into_iter()
        .position(|prefix| key.starts_with(prefix))
        .unwrap_or(other)
}

/// A percentage with two decimals; 0 before any lookup. `others`: the
/// reads that did not hit (misses, and stale serves).
fn hit_rate(hits: u64, others: u64) -> f64 {
    percent(hits, hits + others)
}

/// `part` in percent of `whole`, two decimals; 0 when `whole` is.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

/// One group's reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupCounts {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
}

/// A group's name in the stats: its prefix without the trailing colon.
fn group_name(prefix: &str) -> String {
    prefix.trim_end_matches(':').to_string()
}

/// The cache's statistics: the reference design's fields first
/// (`hits, misses, hitRate, memoryUsed, evictedKeys, keyCount`), then what an
/// operator needs besides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Percentage of reads served fresh from the cache, two decimals (a
    /// stale serve counts as a read that did not hit).
    pub hit_rate: f64,
    /// Redis' `used_memory_human`, or the embedded store's weighted size
    /// (what its entries cost the process, bookkeeping included).
    pub memory_used: String,
    /// From Redis INFO (`evicted_keys`); for the embedded store, the entries
    /// it removed (or refused) to keep within its byte bound.
    pub evicted_keys: u64,
    /// Entries under this cache's prefix (bookkeeping keys excluded).
    pub key_count: u64,
    pub l1_hits: u64,
    pub l2_hits: u64,
    pub sets: u64,
    pub deletes: u64,
    pub invalidations: u64,
    pub loader_runs: u64,
    /// Redis calls that failed or timed out.
    pub errors: u64,
    /// Redis calls not made because the circuit breaker was open.
    pub skipped: u64,
    /// Invalidations that could not reach Redis and went to the journal.
    pub journaled: u64,
    pub compression_bytes_saved: u64,
    /// `closed` (Redis in use), `open` (Redis skipped), or `none` (embedded).
    pub circuit: String,
    /// `redis`, `redis-cluster` or `embedded`.
    pub backend: String,
    /// On a Redis Cluster, each master's own figures (the totals above are
    /// their sums); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<MasterStats>,
    /// Graced reads served a stale value within their grace (expire by tag).
    #[serde(default)]
    pub stale: u64,
    /// How old the stale values served were.
    #[serde(default)]
    pub staleness: Staleness,
    /// Background refreshes started by stale reads.
    #[serde(default)]
    pub refreshes: u64,
    pub by_type: BTreeMap<String, TypeStats>,
}

/// The age of the stale values served (from the start of the load that
/// produced each to the read that served it), in milliseconds: never more
/// than the grace of its entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Staleness {
    pub max_ms: u64,
    pub mean_ms: u64,
}

/// One master of a Redis Cluster, as [`CacheStats::masters`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterStats {
    /// `host:port`.
    pub address: String,
    pub memory_used: String,
    pub evicted_keys: u64,
    /// Entries under this cache's prefix on this master.
    pub key_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStats {
    pub hits: u64,
    pub misses: u64,
    #[serde(default)]
    pub stale: u64,
    pub hit_rate: f64,
}

/// `1.50M`, as Redis' `used_memory_human` reads.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_has_two_decimals() {
        assert_eq!(hit_rate(0, 0), 0.0);
        assert_eq!(hit_rate(2, 1), 66.67);
        assert_eq!(hit_rate(1, 0), 100.0);
    }

    #[test]
    fn groups_by_first_matching_prefix_else_other() {
        let counters = Counters::new(&["analytics:ghosts".into(), "analytics:roles".into()]);
        counters.hit("analytics:ghosts:1:all", Tier::L2);
        counters.miss("analytics:roles:1:all");
        counters.miss("something");
        let stats = counters.snapshot(ServerFigures::default(), "closed", "redis");
        assert_eq!(stats.by_type["analytics:ghosts"].hits, 1);
        assert_eq!(stats.by_type["analytics:roles"].misses, 1);
        assert_eq!(stats.by_type["other"].misses, 1);
        assert_eq!(stats.hit_rate, 33.33);
    }
}
