//! The figures of one scenario, derived from what the driver recorded and
//! what the servers counted over the window.

use serde::{Deserialize, Serialize};

use crate::cli::Cache;
use crate::plan::{Mode, Scenario};
use crate::scrape::Snapshot;
use crate::seed::Seeding;
use crate::workload::Measurement;
use crate::workload::record::{Counts, SecondFigures, percent};

/// One scenario's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub instances: u32,
    pub window_seconds: f64,
    pub reads: u64,
    /// Reads per second over the window.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Reads by `X-Cache`, and failures by status.
    pub counts: Counts,
    /// `X-Cache: hit` / reads, percent.
    pub hit_rate: f64,
    /// (`hit` + `stale`) / reads, percent: answered without waiting for the
    /// database.
    pub served_from_cache: f64,
    /// The stats route's hits / (hits + misses + stale) over the window,
    /// percent (its own `hitRate`'s definition; no stale without grace).
    pub stats_hit_rate: Option<f64>,
    /// Stale serves the stats counted over the window (grace mode).
    pub stats_stale: Option<u64>,
    /// The stats' staleness: the largest since the server started (warm-up
    /// included), and the mean of the window's stale serves.
    pub staleness_max_ms: Option<f64>,
    pub staleness_mean_ms: Option<f64>,
    /// Largest and mean `Age` of the stale answers seen, seconds.
    pub age_max_s: Option<u64>,
    pub age_mean_s: Option<f64>,
    /// Analytics the servers computed from the database over the window.
    pub db_analytics_queries: f64,
    pub db_queries_per_1000_reads: f64,
    /// Event batches the servers stored over the window.
    pub db_ingest_queries: f64,
    pub events_posted: u64,
    pub event_rate_achieved: f64,
    /// Non-2xx answers (and requests with no answer), reads and events.
    pub failures: u64,
    /// Event posts that failed in the window, by status (`0`: no answer).
    pub event_failures: std::collections::BTreeMap<u16, u64>,
    /// The servers' last log lines (warnings and errors), kept when a
    /// request failed.
    pub server_log: Option<String>,
    /// The private Redis' `used_memory_human` after the window.
    pub redis_memory: Option<String>,
    /// The stats' `memoryUsed` and `keyCount` after the window.
    pub cache_memory: String,
    pub cache_keys: u64,
    /// The machine's 1-minute load average at the window's end (Linux):
    /// what else ran beside the benchmark, which shares its cores.
    pub load_average: Option<f64>,
    pub seconds: Vec<SecondFigures>,
}

impl ScenarioResult {
    pub fn new(
        scenario: Scenario,
        instances: u32,
        m: &Measurement,
        before: &Snapshot,
        after: &Snapshot,
        redis_memory: Option<String>,
    ) -> ScenarioResult {
        let q = |p: f64| m.latency.value_at_quantile(p) as f64 / 1000.0;
        let reads = m.counts.reads;
        let db = (after.analytics_queries - before.analytics_queries).max(0.0);
        let stats_hits = after.stats.hits.saturating_sub(before.stats.hits);
        let stats_misses = after.stats.misses.saturating_sub(before.stats.misses);
        let stats_stale = match (after.stats.stale, before.stats.stale) {
            (Some(a), b) => Some(a.saturating_sub(b.unwrap_or(0))),
            (None, _) => None,
        };
        // The window's mean staleness from the running means at its edges.
        let staleness_mean_ms = match (after.stats.staleness_mean_ms, stats_stale) {
            (Some(mean_after), Some(n)) if n > 0 => {
                let before_n = before.stats.stale.unwrap_or(0) as f64;
                let before_sum = before.stats.staleness_mean_ms.unwrap_or(0.0) * before_n;
                let after_sum = mean_after * after.stats.stale.unwrap_or(0) as f64;
                Some(((after_sum - before_sum) / n as f64).max(0.0))
            }
            (mean, _) => mean,
        };
        let failures = m.counts.failures() + m.event_failures.values().sum::<u64>();
        ScenarioResult {
            scenario,
            instances,
            window_seconds: m.window_seconds,
            reads,
            throughput: reads as f64 / m.window_seconds.max(1e-9),
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: m.latency.max() as f64 / 1000.0,
            mean_ms: m.latency.mean() / 1000.0,
            hit_rate: percent(m.counts.hits, reads),
            served_from_cache: percent(m.counts.hits + m.counts.stale, reads),
            stats_hit_rate: {
                let lookups = stats_hits + stats_misses + stats_stale.unwrap_or(0);
                (scenario.cache != Cache::Off && lookups > 0).then(|| percent(stats_hits, lookups))
            },
            stats_stale,
            staleness_max_ms: after.stats.staleness_max_ms,
            staleness_mean_ms,
            age_max_s: (m.counts.aged > 0).then_some(m.counts.age_max_s),
            age_mean_s: (m.counts.aged > 0)
                .then(|| m.counts.age_sum_s as f64 / m.counts.aged as f64),
            db_analytics_queries: db,
            db_queries_per_1000_reads: if reads == 0 {
                0.0
            } else {
                db * 1000.0 / reads as f64
            },
            db_ingest_queries: (after.ingest_queries - before.ingest_queries).max(0.0),
            events_posted: m.events_posted,
            event_rate_achieved: m.events_posted as f64 / m.window_seconds.max(1e-9),
            failures,
            event_failures: m.event_failures.clone(),
            server_log: None,
            redis_memory,
            cache_memory: after.stats.memory_used.clone(),
            cache_keys: after.stats.key_count,
            load_average: load_average(),
            counts: m.counts.clone(),
            seconds: m.seconds.clone(),
        }
    }

    /// Database queries per read.
    pub fn queries_per_read(&self) -> Option<f64> {
        (self.reads > 0).then(|| self.db_analytics_queries / self.reads as f64)
    }

    pub fn is(&self, cache: Cache, mode: Mode) -> bool {
        self.scenario.cache == cache && (cache == Cache::Off || self.scenario.mode == mode)
    }
}

/// The 1-minute load average, from `/proc/loadavg` where there is one.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `a / b` when `b` is positive.
pub fn ratio_or_none(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// The whole run, as `results.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    pub elapsed_seconds: f64,
    pub cores: usize,
    /// The command line's knobs.
    pub knobs: serde_json::Value,
    /// Events per guild, largest first.
    pub guild_sizes: Vec<u64>,
    pub seeding: Vec<(String, Seeding)>,
    /// False when the stats never reported `stale` in a grace scenario:
    /// the server does not have grace mode, and its grace rows are strict.
    pub grace_reported: bool,
    pub scenarios: Vec<ScenarioResult>,
}

impl RunResults {
    /// The scenario's result, if it ran.
    pub fn find(&self, f: impl Fn(&Scenario) -> bool) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|r| f(&r.scenario))
    }

    pub fn failures(&self) -> u64 {
        self.scenarios.iter().map(|r| r.failures).sum()
    }
}

#[cfg(test)]
impl ScenarioResult {
    /// A result with every figure zero, for tests to fill in.
    pub(crate) fn sample(scenario: Scenario) -> ScenarioResult {
        ScenarioResult {
            scenario,
            instances: 1,
            window_seconds: 10.0,
            reads: 0,
            throughput: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            mean_ms: 0.0,
            counts: Counts::default(),
            hit_rate: 0.0,
            served_from_cache: 0.0,
            stats_hit_rate: None,
            stats_stale: None,
            staleness_max_ms: None,
            staleness_mean_ms: None,
            age_max_s: None,
            age_mean_s: None,
            db_analytics_queries: 0.0,
            db_queries_per_1000_reads: 0.0,
            db_ingest_queries: 0.0,
            events_posted: 0,
            event_rate_achieved: 0.0,
            failures: 0,
            event_failures: Default::default(),
            server_log: None,
            redis_memory: None,
            cache_memory: String::new(),
            cache_keys: 0,
            load_average: None,
            seconds: Vec::new(),
        }
    }
}
