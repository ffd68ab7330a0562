//! Scaling benchmark: does an analytics query cost follow its guild, or the
//! whole database?
//!
//! For each database, it times every analytics on one guild of N events
//! (default 100,000) with that guild alone in the database, then with 19
//! more such guilds (20 × N events), and prints the ratio, the generator's
//! throughput and the query plans, as Markdown.
//!
//! ```text
//! cargo bench -p spywatcher-analytics --bench scaling
//! ```
//!
//! Environment: `SPYWATCHER_TEST_PG_URL` (admin URL, as for the tests),
//! `BENCH_EVENTS_PER_GUILD` (default 100000), `BENCH_GUILDS` (default 20),
//! `BENCH_RUNS` (timed runs per query, default 21), `BENCH_BACKENDS`
//! (default `sqlite,postgres`).

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use spywatcher_analytics::{
    AnalyticsKind, EventStore, GeneratorConfig, generate_into, generated_guild_ids,
};
use spywatcher_testkit::postgres::TestDatabase;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A generated database, kept open for the timings.
struct Loaded {
    store: EventStore,
    events: u64,
    elapsed: Duration,
    _guard: Box<dyn std::any::Any>,
}

/// A fresh database of the backend; the TestDatabase or temp dir lives as
/// long as the returned guard.
async fn fresh(backend: &str) -> anyhow::Result<(EventStore, Box<dyn std::any::Any>)> {
    if backend == "postgres" {
        let db = TestDatabase::create().await?;
        let store = EventStore::connect(db.url()).await?;
        Ok((store, Box::new(db)))
    } else {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.db");
        let store = EventStore::connect(path.to_str().unwrap_or("bench.db")).await?;
        Ok((store, Box::new(dir)))
    }
}

async fn load(backend: &str, config: &GeneratorConfig) -> anyhow::Result<Loaded> {
    let (store, guard) = fresh(backend).await?;
    eprint!(
        "{backend}: generating {} events in {} guild(s)...",
        config.events, config.guilds
    );
    let summary = generate_into(&store, config, |_, _| {}).await?;
    eprintln!(" {:.0} events/s", summary.events_per_second());
    Ok(Loaded {
        store,
        events: summary.events,
        elapsed: summary.elapsed,
        _guard: guard,
    })
}

async fn time(
    store: &EventStore,
    kind: AnalyticsKind,
    config: &GeneratorConfig,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let guild = &generated_guild_ids(config)[0];
    let started = Instant::now();
    let rows = store.analytics(kind, guild, None, config.end).await?;
    Ok((started.elapsed(), rows.to_json()))
}

/// (minimum, median). The minimum is the cost with the least interference
/// from the rest of the machine; the median shows the typical run.
fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[0], times[times.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let per_guild: u64 = env_or("BENCH_EVENTS_PER_GUILD", 100_000);
    let guilds: u32 = env_or("BENCH_GUILDS", 20);
    let runs: usize = env_or("BENCH_RUNS", 21).max(1);
    let backends: String = env_or("BENCH_BACKENDS", "sqlite,postgres".to_owned());
    let base = GeneratorConfig {
        seed: 2026,
        guilds: 1,
        users: 2_000,
        days: 30,
        events: per_guild,
        end: Utc
            .with_ymd_and_hms(2026, 11, 20, 0, 0, 0)
            .single()
            .unwrap_or_default(),
        guild_skew: 0.0,
    };
    let big = GeneratorConfig {
        guilds,
        events: per_guild * u64::from(guilds),
        ..base.clone()
    };

    println!("### Query time on one guild of {per_guild} events ({runs} runs)\n");
    println!(
        "| database | analytics | rows | 1 guild, min / median (ms) | {guilds} guilds, min / median (ms) | ratio of mins | ratio of medians |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let mut throughput = Vec::new();
    let mut plans = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let small = load(backend, &base).await?;
        let large = load(backend, &big).await?;
        let mut backend_plans = Vec::new();
        for kind in AnalyticsKind::ALL.iter().copied() {
            // Alternate the two databases run by run, so that whatever else
            // the machine is doing weighs on both alike.
            let (mut t_small, mut t_large) = (Vec::new(), Vec::new());
            let (mut j_small, mut j_large) = (serde_json::Value::Null, serde_json::Value::Null);
            for run in 0..runs + 2 {
                let (ts, js) = time(&small.store, kind, &base).await?;
                let (tl, jl) = time(&large.store, kind, &big).await?;
                // The first two runs warm the caches.
                if run >= 2 {
                    t_small.push(ts);
                    t_large.push(tl);
                }
                (j_small, j_large) = (js, jl);
            }
            // Guild 0 has the same events in both databases: same answer.
            anyhow::ensure!(j_small == j_large, "{backend} {kind}: results differ");
            let ((min_s, med_s), (min_l, med_l)) = (summary(t_small), summary(t_large));
            let ratio = |l: Duration, s: Duration| l.as_secs_f64() / s.as_secs_f64();
            let rows = j_small.as_array().map_or(0, Vec::len);
            println!(
                "| {backend} | {kind} | {rows} | {} / {} | {} / {} | {:.2} | {:.2} |",
                ms(min_s),
                ms(med_s),
                ms(min_l),
                ms(med_l),
                ratio(min_l, min_s),
                ratio(med_l, med_s)
            );
            let guild = &generated_guild_ids(&big)[0];
            backend_plans.push(large.store.explain(kind, guild, None, big.end).await?);
        }
        for l in [&small, &large] {
            let rate = l.events as f64 / l.elapsed.as_secs_f64();
            throughput.push(format!(
                "| {backend} | {} | {:.1} | {rate:.0} |",
                l.events,
                l.elapsed.as_secs_f64()
            ));
        }
        plans.push((backend.to_owned(), backend_plans));
    }
    println!("\n### Generator throughput (events/s, including index maintenance and ANALYZE)\n");
    println!("| database | events | seconds | events/s |");
    println!("| --- | ---: | ---: | ---: |");
    throughput.iter().for_each(|l| println!("{l}"));
    println!("\n### Query plans ({guilds}-guild database)\n");
    for (backend, plans) in plans {
        for (kind, plan) in AnalyticsKind::ALL.iter().zip(plans) {
            println!("{backend} {kind}:\n```text\n{}\n```", plan.join("\n"));
        }
    }
    Ok(())
}
