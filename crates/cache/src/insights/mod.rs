//! Cache insights: what the cache learns about its own workload, per key
//! group (per analytics type, for the service) and for the busiest
//! *subjects* (the key segment after the group's prefix: a guild), in fixed
//! memory; and the settings those figures suggest ([`suggest`]).
//!
//! Measured continuously:
//! - reads, hits, misses, stale serves (the stats' own per-group counters);
//! - how long an entry lives before it ends, and how it ends (invalidated,
//!   expired, replaced), whether it was read first ([`lives`]);
//! - the cost of a miss (the loader's time) and the bytes of an entry;
//! - for each miss that follows an invalidation, how old the invalidated
//!   value was: a grace of G would have served every such miss whose age
//!   is at most G, which is how a suggested grace is *measured*, not
//!   guessed.
//!
//! The hit path pays nothing it did not pay before: an in-process hit marks
//! its entry read through a flag the entry carries (one relaxed load once
//! read), and the busiest subjects count one hit in [`SAMPLE`] per thread.
//! Misses, loads and invalidations, which cost a database query or a round
//! trip anyway, do the rest.

mod histogram;
pub(crate) mod lives;
mod suggest;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use suggest::{Setting, Suggestion};

use crate::journal::PendingInvalidation;
use crate::stats::{GroupCounts, group_index, percent};
use histogram::Histogram;
use lives::{Cause, Ended, Lives, ReadMark};

/// One hit in `SAMPLE` (per thread) counts towards the busiest subjects,
/// weighted by `SAMPLE`.
pub(crate) const SAMPLE: u64 = 16;

/// Subjects tracked for the busiest list (space-saving: the busiest are
/// kept, their counts may be overestimated by the count of the subject they
/// displaced, reported as `error`).
const SUBJECTS_TRACKED: usize = 64;
/// Subjects reported.
const SUBJECTS_REPORTED: usize = 10;

/// Candidate graces for the what-if, in seconds: bucket bounds of the
/// histogram, so that the count of misses each would serve is exact.
const GRACE_CANDIDATES: [u64; 7] = [5, 10, 15, 30, 60, 120, 300];

#[derive(Default)]
struct GroupFigures {
    /// Entries that ended by invalidation: from their store to the end.
    lifetime: Histogram,
    invalidated: AtomicU64,
    expired: AtomicU64,
    replaced: AtomicU64,
    expired_unread: AtomicU64,
    invalidated_unread: AtomicU64,
    /// Loader time of every load (the cost of a miss).
    load: Histogram,
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    /// The TTL and the grace of the last store (0: strict).
    ttl_ms: AtomicU64,
    grace_ms: AtomicU64,
    /// For each miss whose key's previous value was invalidated: that
    /// value's age (from its loader's start) at the miss.
    after_invalidation: Histogram,
    after_expiry: AtomicU64,
}

pub(crate) struct Insights {
    prefixes: Vec<String>,
    /// Indexed like `prefixes`, then "other".
    groups: Vec<GroupFigures>,
    lives: Lives,
    subjects: Mutex<HashMap<String, SubjectCounts>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SubjectCounts {
    hits: u64,
    misses: u64,
    stale: u64,
    error: u64,
}

impl SubjectCounts {
    fn reads(&self) -> u64 {
        self.hits + self.misses + self.stale
    }
}

/// What a read was, for the busiest subjects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    Hit,
    Miss,
    Stale,
}

impl Insights {
    pub fn new(prefixes: &[String], capacity: usize) -> Self {
        Insights {
            prefixes: prefixes.to_vec(),
            groups: (0..=prefixes.len())
                .map(|_| GroupFigures::default())
                .collect(),
            lives: Lives::new(capacity),
            subjects: Mutex::new(HashMap::new()),
        }
    }

    /// The group of `key`: the first prefix it starts with, else "other".
    pub fn group(&self, key: &str) -> usize {
        group_index(self.prefixes.iter().map(String::as_str), key)
    }

    /// A load of `key` took `elapsed` and produced `bytes` bytes.
    pub fn loaded(&self, key: &str, elapsed: Duration, bytes: usize) {
        let figures = &self.groups[self.group(key)];
        figures.load.record(elapsed);
        figures
            .stored_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        figures.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// `key` was stored by a load that started at `born`; `read` is the
    /// mark its in-process copy carries, if any.
    pub fn stored(&self, key: &str, tags: &[String], ttl: Duration, born: Instant, read: ReadMark) {
        let group = self.group(key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.groups[group].ttl_ms.store(ttl_ms, Ordering::Relaxed);
        let mut ended = Vec::new();
        self.lives
            .stored(key, group, tags, ttl, born, read, &mut ended);
        self.record(&ended);
    }

    /// The grace of graced reads of `key` (recorded by their loads).
    pub fn graced(&self, key: &str, grace: Duration) {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.groups[self.group(key)]
            .grace_ms
            .store(ms, Ordering::Relaxed);
    }

    /// A read of `key` served from Redis (in-process hits mark their entry).
    pub fn read_remote(&self, key: &str) {
        self.lives.read(key);
    }

    /// A miss of `key`: was its previous value invalidated, and how long ago
    /// was it loaded?
    pub fn missed(&self, key: &str) {
        let mut ended = Vec::new();
        let grave = self.lives.grave(key, &mut ended);
        self.record(&ended);
        if let Some(grave) = grave {
            let figures = &self.groups[grave.group];
            match grave.cause {
                Cause::Invalidated => figures.after_invalidation.record(grave.born.elapsed()),
                Cause::Expired => {
                    figures.after_expiry.fetch_add(1, Ordering::Relaxed);
                }
                Cause::Replaced => {}
            }
        }
        self.subject(key, Read::Miss, 1);
    }

    /// Counts a read of `key` for its subject (hits: sampled, see [`SAMPLE`]).
    pub fn subject(&self, key: &str, read: Read, weight: u64) {
        let group = self.group(key);
        let Some(prefix) = self.prefixes.get(group) else {
            return;
        };
        let rest = &key[prefix.len()..];
        let subject = rest.split(':').next().unwrap_or(rest);
        if subject.is_empty() {
            return;
        }
        let bump = |counts: &mut SubjectCounts| match read {
            Read::Hit => counts.hits += weight,
            Read::Miss => counts.misses += weight,
            Read::Stale => counts.stale += weight,
        };
        let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        // The common case: a subject already tracked, no allocation.
        if let Some(counts) = subjects.get_mut(subject) {
            bump(counts);
            return;
        }
        let mut counts = SubjectCounts::default();
        if subjects.len() >= SUBJECTS_TRACKED {
            // Space-saving: the least read subject makes room, and the
            // newcomer inherits its count as a possible overestimate.
            let Some((least, inherited)) = subjects
                .iter()
                .min_by_key(|(_, c)| c.reads())
                .map(|(k, c)| (k.clone(), c.reads()))
            else {
                return;
            };
            subjects.remove(&least);
            counts.hits = inherited;
            counts.error = inherited;
        }
        bump(&mut counts);
        subjects.insert(subject.to_string(), counts);
    }

    /// An invalidation applied in this process (its own, or another's).
    pub fn invalidated(&self, op: &PendingInvalidation) {
        let mut ended = Vec::new();
        match op {
            PendingInvalidation::Tags { tags } => self.lives.tags_invalidated(tags, &mut ended),
            PendingInvalidation::Keys { keys } => self.lives.keys_invalidated(keys, &mut ended),
            PendingInvalidation::Pattern { .. } | PendingInvalidation::FlushAll => {
                self.lives.all_invalidated(&mut ended)
            }
        }
        self.record(&ended);
    }

    fn record(&self, ended: &[Ended]) {
        for end in ended {
            let figures = &self.groups[end.group];
            match end.cause {
                Cause::Invalidated => {
                    figures.invalidated.fetch_add(1, Ordering::Relaxed);
                    figures.lifetime.record(end.lifetime);
                    if !end.read {
                        figures.invalidated_unread.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Cause::Expired => {
                    figures.expired.fetch_add(1, Ordering::Relaxed);
                    if !end.read {
                        figures.expired_unread.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Cause::Replaced => {
                    figures.replaced.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The figures now, with the suggestions they make. `counts`: the
    /// stats' per-group reads, named.
    pub fn report(&self, counts: &[(String, GroupCounts)]) -> InsightsReport {
        let mut ended = Vec::new();
        self.lives.sweep(&mut ended);
        self.record(&ended);
        let mut by_type = BTreeMap::new();
        for ((name, c), f) in counts.iter().zip(&self.groups) {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let lifetime = f.lifetime.snapshot();
            let load = f.load.snapshot();
            let after = f.after_invalidation.snapshot();
            let (invalidated, expired) = (get(&f.invalidated), get(&f.expired));
            let stored = get(&f.stored);
            let reads = c.hits + c.misses + c.stale;
            let grace_would_serve = GRACE_CANDIDATES
                .iter()
                .map(|&seconds| {
                    let served = after.at_most(seconds * 1000);
                    GraceWhatIf {
                        grace_seconds: seconds,
                        misses_served: served,
                        percent_of_misses: percent(served, c.misses),
                    }
                })
                .collect();
            by_type.insert(
                name.clone(),
                TypeInsights {
                    reads,
                    hits: c.hits,
                    misses: c.misses,
                    stale: c.stale,
                    hit_rate: percent(c.hits, reads),
                    miss_rate: percent(c.misses, reads),
                    ttl_seconds: get(&f.ttl_ms) as f64 / 1000.0,
                    grace_seconds: get(&f.grace_ms) as f64 / 1000.0,
                    loads: stored,
                    ended: Endings {
                        invalidated,
                        expired,
                        replaced: get(&f.replaced),
                        expired_unread: get(&f.expired_unread),
                        invalidated_unread: get(&f.invalidated_unread),
                    },
                    expired_unread_percent: percent(get(&f.expired_unread), invalidated + expired),
                    lifetime: Timing::of(&lifetime),
                    lifetime_histogram: histogram::BOUNDS_MS
                        .iter()
                        .zip(lifetime.counts)
                        .filter(|(_, n)| *n > 0)
                        .map(|(&le, count)| Bucket {
                            le_ms: (le != u64::MAX).then_some(le),
                            count,
                        })
                        .collect(),
                    miss_cost: Timing::of(&load),
                    bytes_per_entry: get(&f.stored_bytes).checked_div(stored).unwrap_or(0),
                    misses_after_invalidation: after.count(),
                    misses_after_expiry: get(&f.after_expiry),
                    grace_would_serve,
                },
            );
        }
        let (tracked, untracked) = self.lives.counts();
        let suggestions = by_type
            .iter()
            .flat_map(|(name, t)| suggest::suggest(name, t))
            .collect();
        InsightsReport {
            by_type,
            busiest: self.busiest(),
            suggestions,
            tracked_entries: tracked,
            untracked_entries: untracked,
        }
    }

    fn busiest(&self) -> Vec<SubjectInsights> {
        let subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<SubjectInsights> = subjects
            .iter()
            .map(|(subject, c)| SubjectInsights {
                subject: subject.clone(),
                reads: c.reads(),
                hit_rate: percent(c.hits, c.reads()),
                misses: c.misses,
                stale: c.stale,
                error: c.error,
            })
            .collect();
        list.sort_by(|a, b| b.reads.cmp(&a.reads).then(a.subject.cmp(&b.subject)));
        list.truncate(SUBJECTS_REPORTED);
        list
    }
}

/// True once every [`SAMPLE`] calls on this thread.
pub(crate) fn sampled() -> bool {
    thread_local! {
        static TICK: Cell<u64> = const { Cell::new(0) };
    }
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n.is_multiple_of(SAMPLE)
    })
}

/// The insights of the stats route (`insights`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightsReport {
    /// Per key group, named as in `byType`.
    pub by_type: BTreeMap<String, TypeInsights>,
    /// The most read subjects (the key segment after the group: a guild),
    /// at most ten. Hits are sampled (one in 16), misses and stale serves
    /// exact.
    pub busiest: Vec<SubjectInsights>,
    pub suggestions: Vec<Suggestion>,
    /// Entries whose life is tracked now; stored untracked (the table was
    /// full) since the start.
    pub tracked_entries: u64,
    pub untracked_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeInsights {
    pub reads: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    /// Percentages of `reads`, two decimals.
    pub hit_rate: f64,
    pub miss_rate: f64,
    /// The TTL and the grace the entries were last stored with (0: strict).
    pub ttl_seconds: f64,
    pub grace_seconds: f64,
    pub loads: u64,
    pub ended: Endings,
    /// Entries that expired unread, in percent of the entries that ended
    /// by invalidation or expiry.
    pub expired_unread_percent: f64,
    /// Of the entries that ended by invalidation: from store to invalidation.
    pub lifetime: Timing,
    /// Its histogram: count per bucket (`leMs`: upper bound, none for the
    /// last), non-empty buckets only.
    pub lifetime_histogram: Vec<Bucket>,
    /// The loader's time, per load.
    pub miss_cost: Timing,
    pub bytes_per_entry: u64,
    /// Misses whose previous value had been invalidated (their age is what
    /// a grace would have to cover), and whose previous value expired.
    pub misses_after_invalidation: u64,
    pub misses_after_expiry: u64,
    /// Of the misses, how many a grace of each length would have served.
    pub grace_would_serve: Vec<GraceWhatIf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endings {
    pub invalidated: u64,
    pub expired: u64,
    pub replaced: u64,
    pub expired_unread: u64,
    pub invalidated_unread: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    pub count: u64,
    pub mean_ms: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

impl Timing {
    fn of(h: &histogram::Snapshot) -> Timing {
        Timing {
            count: h.count(),
            mean_ms: h.mean_ms(),
            p50_ms: h.quantile_ms(0.5),
            p95_ms: h.quantile_ms(0.95),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub le_ms: Option<u64>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraceWhatIf {
    pub grace_seconds: u64,
    pub misses_served: u64,
    pub percent_of_misses: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectInsights {
    pub subject: String,
    pub reads: u64,
    pub hit_rate: f64,
    pub misses: u64,
    pub stale: u64,
    /// How much `reads` may overstate (space-saving), 0 when exact.
    pub error: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_subjects_are_kept_in_fixed_memory() {
        let insights = Insights::new(&["analytics:ghosts:".to_string()], 100);
        for guild in 0..1_000 {
            insights.subject(&format!("analytics:ghosts:{guild}:all"), Read::Miss, 1);
        }
        for _ in 0..500 {
            insights.subject("analytics:ghosts:7:all", Read::Hit, 1);
        }
        insights.subject("analytics:ghosts:7:123", Read::Stale, 1);
        insights.subject("other:7", Read::Hit, 1);
        assert!(insights.subjects.lock().unwrap().len() <= SUBJECTS_TRACKED);
        let busiest = insights.busiest();
        assert_eq!(busiest[0].subject, "7");
        assert!(busiest[0].reads >= 502, "{:?}", busiest[0]);
        assert_eq!(busiest[0].stale, 1);
        assert!(busiest.len() <= SUBJECTS_REPORTED);
    }
}
