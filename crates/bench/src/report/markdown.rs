//! `report.md`: what was run, one row per scenario, the floors, strict
//! against grace at the busy rate, and the event-rate sweep.

use std::fmt::Write;

use super::floors::{FLOORS, FloorRow, floor_rows};
use super::results::{RunResults, ScenarioResult};
use crate::cli::{Cache, Database};
use crate::plan::Mode;

/// The whole report. `base_rate` and `busy_rate` name the floors' and the
/// strict-versus-grace scenarios.
pub fn render(results: &RunResults, base_rate: f64, busy_rate: f64) -> String {
    let mut md = String::new();
    let floors = floor_rows(results, base_rate);
    header(&mut md, results);
    floors_table(&mut md, &floors, base_rate);
    promises_table(&mut md, &floors);
    busy_table(&mut md, results, busy_rate);
    sweep_table(&mut md, results);
    scenarios_table(&mut md, results);
    md
}

fn header(md: &mut String, r: &RunResults) {
    let knob = |name: &str| r.knobs.get(name).map(|v| v.to_string()).unwrap_or_default();
    let _ = writeln!(md, "# Workload benchmark\n");
    let _ = writeln!(
        md,
        "Run of `spywatcher-bench` started {} on {} cores; {:.0} s in all. \
         Produced by `scripts/bench-workload` (this file, `results.json` and the charts).\n",
        r.started_at, r.cores, r.elapsed_seconds
    );
    let largest = r.guild_sizes.first().copied().unwrap_or(0);
    let smallest = r.guild_sizes.last().copied().unwrap_or(0);
    let _ = writeln!(
        md,
        "- Data: {} events over {} guilds ({} members each, {} days), guild sizes Zipf \
         (exponent {}): {} events in the largest guild, {} in the smallest.",
        knob("events"),
        r.guild_sizes.len(),
        knob("users"),
        knob("days"),
        knob("skew"),
        largest,
        smallest
    );
    for (database, s) in &r.seeding {
        let _ = writeln!(
            md,
            "- Seeding {database}: {} events in {:.1} s ({:.0} events/s).",
            s.events, s.seconds, s.events_per_second
        );
    }
    let _ = writeln!(
        md,
        "- Each scenario: fresh server process(es) ({} instance(s)), {} s warm-up, {} s measured; \
         {} readers in closed loop on one HTTP/1.1 client with keep-alive; reads over guilds by \
         Zipf (exponent {}, rank = size rank), the six analytics uniformly, `since` one of all / \
         now−1d / now−7d (fixed at the start); events at the scenario's rate (in total, open loop) \
         over guilds with the data's skew, kinds weighted message 40, typing 35, presence 22, \
         role change 2, member join 1. Grace scenarios: `CACHE_GRACE_*={}` for all six analytics.",
        knob("instances"),
        knob("warmup"),
        knob("duration"),
        knob("concurrency"),
        knob("read_skew"),
        knob("grace")
    );
    let _ = writeln!(
        md,
        "- Hit rate: `X-Cache: hit` / reads (stale answers are not hits; \"from cache\" counts \
         `hit` + `stale`). Stats hit rate: the stats route's hits / (hits + misses + stale) \
         over the window. DB queries: `spywatcher_db_queries_total{{operation=\"analytics\"}}` over the \
         window. Failures: non-2xx answers and requests with no answer, reads and events.\n"
    );
    if !r.grace_reported {
        let _ = writeln!(
            md,
            "**Note:** the server never reported `stale` serves in its stats: it has no grace \
             mode, so the grace rows below ran strict.\n"
        );
    }
    let loads: Vec<f64> = r.scenarios.iter().filter_map(|s| s.load_average).collect();
    if let (Some(lo), Some(hi)) = (
        loads.iter().copied().reduce(f64::min),
        loads.iter().copied().reduce(f64::max),
    ) {
        let _ = writeln!(
            md,
            "- Machine load (1-minute load average at the end of each window): {lo:.1} … {hi:.1} \
             on {} cores. The benchmark alone (server, database, driver) keeps about the core \
             count busy; above that, other processes took CPU from all three alike.\n",
            r.cores
        );
    }
    let failures = r.failures();
    let _ = writeln!(md, "Failed requests over the whole run: **{failures}**.\n");
    for s in r.scenarios.iter().filter(|s| s.failures > 0) {
        let _ = writeln!(
            md,
            "- {}: reads failed by status {:?}, events by status {:?} (0: no answer). \
             The servers' last log lines:\n\n```text\n{}\n```\n",
            s.scenario,
            s.counts.failed,
            s.event_failures,
            s.server_log.as_deref().unwrap_or_default().trim()
        );
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn floors_table(md: &mut String, rows: &[FloorRow], base_rate: f64) {
    let _ = writeln!(
        md,
        "## Floors at {base_rate} events/s (each cache against `off` on the same database)\n"
    );
    if rows.is_empty() {
        let _ = writeln!(md, "No cache ran beside `off` at this rate.\n");
        return;
    }
    let _ = write!(md, "| database | cache |");
    for f in &FLOORS {
        let _ = write!(md, " {} (floor ≥ {}{}) |", f.figure, f.at_least, f.unit);
    }
    let _ = writeln!(md, "\n| --- | --- |{}", " ---: |".repeat(FLOORS.len()));
    for row in rows {
        let _ = write!(md, "| {} | {} |", row.database.as_str(), row.cache.as_str());
        for (check, floor) in row.checks.iter().zip(&FLOORS) {
            match check.value {
                Some(v) => {
                    let _ = write!(md, " {v:.1}{} {} |", floor.unit, pass(check.pass));
                }
                None => {
                    let _ = write!(md, " n/a FAIL |");
                }
            }
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
}

fn promises_table(md: &mut String, rows: &[FloorRow]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "## The reference design's promises beside ours\n");
    let _ = writeln!(
        md,
        "| figure | reference design | floor | ours (lowest … highest over database × cache) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for (i, floor) in FLOORS.iter().enumerate() {
        let values: Vec<f64> = rows.iter().filter_map(|r| r.checks[i].value).collect();
        let ours = match (
            values.iter().copied().reduce(f64::min),
            values.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) => format!("{lo:.1}{u} … {hi:.1}{u}", u = floor.unit),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | ≥ {}{} | {} |",
            floor.figure, floor.promise, floor.at_least, floor.unit, ours
        );
    }
    let _ = writeln!(md);
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn busy_table(md: &mut String, r: &RunResults, busy_rate: f64) {
    let mut databases: Vec<Database> = r.scenarios.iter().map(|s| s.scenario.database).collect();
    databases.sort();
    databases.dedup();
    let mut rows = Vec::new();
    for database in databases {
        let at = |cache: Cache, mode: Mode| {
            r.find(|s| {
                s.database == database && s.cache == cache && s.mode == mode && s.rate == busy_rate
            })
        };
        if let Some(off) = at(Cache::Off, Mode::Strict) {
            rows.push(busy_row("off", off));
        }
        for cache in [Cache::Embedded, Cache::Redis] {
            for mode in [Mode::Strict, Mode::Grace] {
                if let Some(s) = at(cache, mode) {
                    let label = format!(
                        "{} {}",
                        cache.as_str(),
                        if mode == Mode::Grace {
                            "grace"
                        } else {
                            "strict"
                        }
                    );
                    rows.push(busy_row(&label, s));
                }
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Strict and grace at {busy_rate} events/s\n");
    let _ = writeln!(
        md,
        "| database | cache | hit rate | from cache | p50 ms | p99 ms | reads/s | DB queries / 1,000 reads | stale serves | staleness max / mean (stats) ms | Age max / mean (answers) s |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in rows {
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md);
}

fn busy_row(label: &str, s: &ScenarioResult) -> String {
    format!(
        "| {} | {} | {:.1} % | {:.1} % | {:.2} | {:.1} | {:.0} | {:.1} | {} | {} / {} | {} / {} |",
        s.scenario.database.as_str(),
        label,
        s.hit_rate,
        s.served_from_cache,
        s.p50_ms,
        s.p99_ms,
        s.throughput,
        s.db_queries_per_1000_reads,
        s.stats_stale.map_or("–".into(), |n| n.to_string()),
        opt(s.staleness_max_ms, 0),
        opt(s.staleness_mean_ms, 0),
        s.age_max_s.map_or("–".into(), |n| n.to_string()),
        opt(s.age_mean_s, 1),
    )
}

fn sweep_table(md: &mut String, r: &RunResults) {
    let Some((database, sweep)) = sweep_points(r) else {
        return;
    };
    if sweep.len() < 2 {
        return;
    }
    let _ = writeln!(
        md,
        "## Event-rate sweep (Redis, {})\n\n![hit rate and p99 against the event rate](event-rate.png)\n",
        database.as_str()
    );
    let _ = writeln!(
        md,
        "| events/s | strict hit rate | strict p99 ms | strict reads/s | grace from cache | grace hit rate | grace p99 ms | grace reads/s |"
    );
    let _ = writeln!(
        md,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (rate, strict, grace) in sweep {
        let f =
            |s: Option<&ScenarioResult>, g: fn(&ScenarioResult) -> f64, d: usize| opt(s.map(g), d);
        let _ = writeln!(
            md,
            "| {rate} | {} % | {} | {} | {} % | {} % | {} | {} |",
            f(strict, |s| s.hit_rate, 1),
            f(strict, |s| s.p99_ms, 1),
            f(strict, |s| s.throughput, 0),
            f(grace, |s| s.served_from_cache, 1),
            f(grace, |s| s.hit_rate, 1),
            f(grace, |s| s.p99_ms, 1),
            f(grace, |s| s.throughput, 0),
        );
    }
    let _ = writeln!(
        md,
        "\n![hit rate and p99 per second, strict and grace](over-time.png)\n"
    );
}

/// One rate of the sweep: (events/s, strict, grace).
pub type SweepPoint<'a> = (f64, Option<&'a ScenarioResult>, Option<&'a ScenarioResult>);

/// The Redis runs of the sweep's database (SQLite if it ran), by rate.
pub fn sweep_points(r: &RunResults) -> Option<(Database, Vec<SweepPoint<'_>>)> {
    let database = r
        .scenarios
        .iter()
        .map(|s| s.scenario.database)
        .find(|d| *d == Database::Sqlite)
        .or_else(|| r.scenarios.first().map(|s| s.scenario.database))?;
    let mut rates: Vec<f64> = r
        .scenarios
        .iter()
        .filter(|s| s.scenario.database == database && s.scenario.cache == Cache::Redis)
        .map(|s| s.scenario.rate)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let points = rates
        .into_iter()
        .map(|rate| {
            let at = |mode| {
                r.find(|s| {
                    s.database == database
                        && s.cache == Cache::Redis
                        && s.mode == mode
                        && s.rate == rate
                })
            };
            (rate, at(Mode::Strict), at(Mode::Grace))
        })
        .collect();
    Some((database, points))
}

fn scenarios_table(md: &mut String, r: &RunResults) {
    let _ = writeln!(md, "## Every scenario\n");
    let _ = writeln!(
        md,
        "| scenario | reads/s | p50 ms | p95 ms | p99 ms | DB queries (/ 1,000 reads) | hit rate | stats hit rate | stale serves | staleness max / mean ms | Redis memory | cache keys | events posted (/s) | failures | load |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
    );
    for s in &r.scenarios {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} ({:.1}) | {:.1} % | {} | {} | {} / {} | {} | {} | {} ({:.1}) | {} | {} |",
            s.scenario,
            s.throughput,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.db_analytics_queries,
            s.db_queries_per_1000_reads,
            s.hit_rate,
            s.stats_hit_rate.map_or("–".into(), |h| format!("{h:.1} %")),
            s.stats_stale.map_or("–".into(), |n| n.to_string()),
            opt(s.staleness_max_ms, 0),
            opt(s.staleness_mean_ms, 0),
            s.redis_memory.as_deref().unwrap_or("–"),
            s.cache_keys,
            s.events_posted,
            s.event_rate_achieved,
            s.failures,
            opt(s.load_average, 1),
        );
    }
    let _ = writeln!(md);
}
