//! The scenario matrix (issue 11):
//!
//! - for each database, every cache at the base rate (5 events/s): the
//!   floors compare each cache with `off` there;
//! - for each database at the busy rate (100 events/s): off, and every
//!   cache in strict and in grace mode, side by side;
//! - the event-rate sweep (1, 5, 20, 100 events/s) for Redis strict and
//!   grace on the first database only, reusing the runs above.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{Args, Cache, Database};

/// How an event's invalidation treats the cached analytics of its guild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Delete by tag (the default).
    Strict,
    /// Mark stale by tag; serve the previous value within the grace.
    Grace,
}

/// One run: fresh servers, warm-up, measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub database: Database,
    pub cache: Cache,
    pub mode: Mode,
    /// Events per second, over all guilds and instances.
    pub rate: f64,
}

impl Scenario {
    /// `sqlite redis grace @ 100/s`
    pub fn name(&self) -> String {
        self.to_string()
    }

    fn same_as(&self, other: &Scenario) -> bool {
        self.database == other.database
            && self.cache == other.cache
            && self.mode == other.mode
            && self.rate == other.rate
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match (self.cache, self.mode) {
            (Cache::Off, _) => "",
            (_, Mode::Strict) => " strict",
            (_, Mode::Grace) => " grace",
        };
        write!(
            f,
            "{} {}{} @ {}/s",
            self.database.as_str(),
            self.cache.as_str(),
            mode,
            self.rate
        )
    }
}

/// The scenarios to run, in order, without duplicates.
pub fn scenarios(args: &Args) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    let mut add = |s: Scenario| {
        if !out.iter().any(|o| o.same_as(&s)) {
            out.push(s);
        }
    };
    let at = |database, cache, mode, rate| Scenario {
        database,
        cache,
        mode,
        rate,
    };
    for &database in &args.databases {
        for &cache in &args.caches {
            add(at(database, cache, Mode::Strict, args.base_rate));
        }
        for &cache in &args.caches {
            add(at(database, cache, Mode::Strict, args.busy_rate));
            if cache != Cache::Off {
                add(at(database, cache, Mode::Grace, args.busy_rate));
            }
        }
    }
    // The sweep: on SQLite when it is run, else on the first database.
    let sweep_database = args
        .databases
        .iter()
        .copied()
        .find(|d| *d == Database::Sqlite)
        .or_else(|| args.databases.first().copied());
    if let (Some(database), true) = (sweep_database, args.caches.contains(&Cache::Redis)) {
        for &rate in &args.rates {
            for mode in [Mode::Strict, Mode::Grace] {
                add(at(database, Cache::Redis, mode, rate));
            }
        }
    }
    out
}

/// What one scenario costs besides its warm-up and window: starting and
/// stopping servers, scraping, a FLUSHALL, reads in flight at the end
/// (measured on the 2-core machine: well under 1 s; 1 s leaves room).
pub const SCENARIO_OVERHEAD: Duration = Duration::from_secs(1);

/// Seeding rate assumed for the estimate, events/s: what 2,000,000 events
/// took on the 2-core machine with other builds running (SQLite 72,000,
/// PostgreSQL 46,000), rounded down.
pub fn seeding_rate(database: Database) -> f64 {
    match database {
        Database::Sqlite => 70_000.0,
        Database::Postgres => 45_000.0,
    }
}

/// The time the whole run should take.
pub fn estimate(args: &Args, scenarios: &[Scenario]) -> Duration {
    let seeding: f64 = args
        .databases
        .iter()
        .map(|d| args.events as f64 / seeding_rate(*d))
        .sum();
    let per_scenario = args.warmup + args.duration + SCENARIO_OVERHEAD.as_secs_f64();
    Duration::from_secs_f64(seeding + per_scenario * scenarios.len() as f64)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Mode, scenarios};
    use crate::cli::{Args, Cache, Database};

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("spywatcher-bench").chain(extra.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_default_matrix_is_twenty_one_scenarios() {
        let plan = scenarios(&args(&[]));
        // 2 databases x (3 at 5/s + 5 at 100/s), and the sweep: strict at 1
        // and 20/s, grace at 1, 5 and 20/s.
        assert_eq!(plan.len(), 21, "{plan:#?}");
        let sweep: Vec<_> = plan
            .iter()
            .filter(|s| s.database == Database::Sqlite && s.cache == Cache::Redis)
            .map(|s| (s.mode, s.rate))
            .collect();
        for rate in [1.0, 5.0, 20.0, 100.0] {
            assert!(sweep.contains(&(Mode::Strict, rate)), "{rate}");
            assert!(sweep.contains(&(Mode::Grace, rate)), "{rate}");
        }
        assert!(
            !plan
                .iter()
                .any(|s| s.cache == Cache::Off && s.mode == Mode::Grace)
        );
    }

    #[test]
    fn no_redis_no_sweep() {
        let plan = scenarios(&args(&[
            "--databases",
            "sqlite",
            "--caches",
            "off,embedded",
        ]));
        assert_eq!(plan.len(), 2 + 3, "{plan:#?}");
    }
}
