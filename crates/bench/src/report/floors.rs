//! The floors of issue 11, at the base rate (5 events/s): each cache
//! against `off` on the same database.

use serde::Serialize;

use super::results::{RunResults, ScenarioResult, ratio_or_none};
use crate::cli::{Cache, Database};
use crate::plan::Mode;

/// One figure's floor and the reference design's promise for it.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub figure: &'static str,
    /// The figure must be at least this.
    pub at_least: f64,
    pub unit: &'static str,
    /// What the reference design promises with caching.
    pub promise: &'static str,
}

/// In the order of [`FloorRow::checks`].
pub const FLOORS: [Floor; 4] = [
    Floor {
        figure: "p50 latency reduction",
        at_least: 95.0,
        unit: "%",
        promise: "50–90 % faster",
    },
    Floor {
        figure: "DB queries per read reduction",
        at_least: 95.0,
        unit: "%",
        promise: "60–80 % less database load",
    },
    Floor {
        figure: "throughput ratio",
        at_least: 10.0,
        unit: "×",
        promise: "2–5× throughput",
    },
    Floor {
        figure: "hit rate",
        at_least: 95.0,
        unit: "%",
        promise: "80–95 % hit rate",
    },
];

/// A figure and whether it clears its floor (`None`: not computable, a
/// failure).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloorCheck {
    pub value: Option<f64>,
    pub pass: bool,
}

impl FloorCheck {
    fn of(value: Option<f64>, floor: &Floor) -> FloorCheck {
        FloorCheck {
            value,
            pass: value.is_some_and(|v| v >= floor.at_least),
        }
    }
}

/// One database × cache at the base rate, against `off` there.
#[derive(Debug, Clone, Serialize)]
pub struct FloorRow {
    pub database: Database,
    pub cache: Cache,
    /// In the order of [`FLOORS`].
    pub checks: [FloorCheck; 4],
}

impl FloorRow {
    pub fn compare(database: Database, off: &ScenarioResult, cached: &ScenarioResult) -> Self {
        let reduction = |cached: Option<f64>, off: Option<f64>| {
            let (c, o) = (cached?, off?);
            ratio_or_none(c, o).map(|r| (1.0 - r) * 100.0)
        };
        let values = [
            reduction(Some(cached.p50_ms), Some(off.p50_ms)),
            reduction(cached.queries_per_read(), off.queries_per_read()),
            ratio_or_none(cached.throughput, off.throughput),
            (cached.reads > 0).then_some(cached.hit_rate),
        ];
        FloorRow {
            database,
            cache: cached.scenario.cache,
            checks: std::array::from_fn(|i| FloorCheck::of(values[i], &FLOORS[i])),
        }
    }

    pub fn passes(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// Every cache's row at the base rate, for each database whose `off` ran.
pub fn floor_rows(results: &RunResults, base_rate: f64) -> Vec<FloorRow> {
    let mut rows = Vec::new();
    let mut databases: Vec<Database> = results
        .scenarios
        .iter()
        .map(|r| r.scenario.database)
        .collect();
    databases.sort();
    databases.dedup();
    for database in databases {
        let at = |cache: Cache| {
            results.find(|s| {
                s.database == database
                    && s.cache == cache
                    && s.mode == Mode::Strict
                    && s.rate == base_rate
            })
        };
        let Some(off) = at(Cache::Off) else {
            continue;
        };
        for cache in [Cache::Embedded, Cache::Redis] {
            if let Some(cached) = at(cache) {
                rows.push(FloorRow::compare(database, off, cached));
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::FloorRow;
    use crate::cli::{Cache, Database};
    use crate::plan::{Mode, Scenario};
    use crate::report::ScenarioResult;

    fn result(cache: Cache, p50: f64, throughput: f64, db: f64, hits: u64) -> ScenarioResult {
        let reads = (throughput * 10.0) as u64;
        ScenarioResult {
            reads,
            throughput,
            p50_ms: p50,
            hit_rate: hits as f64 * 100.0 / reads.max(1) as f64,
            db_analytics_queries: db,
            ..ScenarioResult::sample(Scenario {
                database: Database::Sqlite,
                cache,
                mode: Mode::Strict,
                rate: 5.0,
            })
        }
    }

    #[test]
    fn a_cache_that_clears_every_floor_passes() {
        // Off: 100 reads/s, p50 200 ms, a query per read.
        let off = result(Cache::Off, 200.0, 100.0, 1000.0, 0);
        // Cached: 2,000 reads/s (20x), p50 2 ms (99 % lower), 200 queries
        // for 20,000 reads (0.01 per read: 99 % fewer), 98 % hits.
        let cached = result(Cache::Embedded, 2.0, 2000.0, 200.0, 19_600);
        let row = FloorRow::compare(Database::Sqlite, &off, &cached);
        let values: Vec<f64> = row.checks.iter().map(|c| c.value.unwrap()).collect();
        assert!((values[0] - 99.0).abs() < 1e-9, "{values:?}");
        assert!((values[1] - 99.0).abs() < 1e-9, "{values:?}");
        assert!((values[2] - 20.0).abs() < 1e-9, "{values:?}");
        assert!((values[3] - 98.0).abs() < 1e-9, "{values:?}");
        assert!(row.passes());
    }

    #[test]
    fn each_floor_fails_on_its_own() {
        let off = result(Cache::Off, 200.0, 100.0, 1000.0, 0);
        // p50 only 90 % lower.
        let slow = result(Cache::Redis, 20.0, 2000.0, 200.0, 19_600);
        let row = FloorRow::compare(Database::Sqlite, &off, &slow);
        assert_eq!(
            row.checks.map(|c| c.pass),
            [false, true, true, true],
            "{row:?}"
        );
        // 9x throughput, 6 % of reads reach the database, 89 % hits.
        let busy = result(Cache::Redis, 2.0, 900.0, 540.0, 8_000);
        let row = FloorRow::compare(Database::Sqlite, &off, &busy);
        assert_eq!(row.checks.map(|c| c.pass), [true, false, false, false]);
        assert!(!row.passes());
    }

    #[test]
    fn nothing_to_compare_is_a_failure_not_a_pass() {
        // An off run that read nothing: no ratio can be formed.
        let off = result(Cache::Off, 0.0, 0.0, 0.0, 0);
        let cached = result(Cache::Embedded, 2.0, 2000.0, 200.0, 19_600);
        let row = FloorRow::compare(Database::Sqlite, &off, &cached);
        assert!(row.checks[0].value.is_none() && !row.checks[0].pass);
        assert!(row.checks[2].value.is_none() && !row.checks[2].pass);
        assert!(!row.passes());
    }
}
