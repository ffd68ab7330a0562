//! Before/after timings of the daily rollups: every analytics on the
//! largest guild, by its raw-events reference query (the queries before
//! migration 0004) and by the rollup query served now, side by side in
//! one run on one database, for `since` = all, now − 7 days and now − 1
//! day. Checks that both return the same rows. Prints Markdown.
//!
//! ```text
//! cargo run --release -p spywatcher-analytics --example rollup_timings -- DATABASE_URL [--seed] [--runs N]
//! ```
//!
//! Point it at a database seeded like the workload benchmark's (`spywatcher
//! seed --guilds 50 --users 500 --events 2000000 --days 30 --guild-skew 1`),
//! or pass `--seed` to seed an empty one so. Opening a database from before
//! migration 0004 upgrades it (the time is printed).

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use spywatcher_analytics::{
    AnalyticsKind, EventStore, GeneratorConfig, Query, Since, generate_into, generated_guild_ids,
};

/// The workload benchmark's data set (BENCHMARKS.md, "Workload").
fn workload_config() -> GeneratorConfig {
    GeneratorConfig {
        guilds: 50,
        users: 500,
        events: 2_000_000,
        days: 30,
        guild_skew: 1.0,
        ..Default::default()
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .context("usage: rollup_timings DATABASE_URL [--seed] [--runs N]")?;
    let seed = args.iter().any(|a| a == "--seed");
    let runs: usize = match args.iter().position(|a| a == "--runs") {
        Some(i) => args
            .get(i + 1)
            .context("--runs needs a number")?
            .parse()
            .context("--runs must be a number")?,
        None => 7,
    };

    let started = Instant::now();
    let store = EventStore::connect(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    eprintln!(
        "opened (and migrated) {} in {:.1} s",
        store.backend_name(),
        started.elapsed().as_secs_f64()
    );
    let config = workload_config();
    if seed && store.event_count().await? == 0 {
        let summary = generate_into(&store, &config, |_, _| {}).await?;
        eprintln!(
            "seeded {} events at {:.0} events/s",
            summary.events,
            summary.events_per_second()
        );
    }
    let guild = generated_guild_ids(&config)[0].clone();
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let sinces = [
        ("all", None),
        ("now − 7d", Some(Since::from(now - day * 7))),
        ("now − 1d", Some(Since::from(now - day))),
    ];

    println!(
        "{} ({} events), guild {guild}, median of {runs} runs, ms\n",
        store.backend_name(),
        store.event_count().await?
    );
    println!("| analytics | since | before (raw events) | after (rollups) | speed-up |");
    println!("|---|---|---:|---:|---:|");
    for kind in AnalyticsKind::ALL {
        for (label, since) in sinces {
            let mut times = [Vec::new(), Vec::new()];
            let mut rows = [None, None];
            // Warm-up, then the two queries taking turns.
            for run in 0..=runs {
                for (i, query) in [Query::Reference, Query::Rollups].into_iter().enumerate() {
                    let t = Instant::now();
                    let result = store.analytics_by(query, *kind, &guild, since, now).await?;
                    if run > 0 {
                        times[i].push(t.elapsed());
                    }
                    rows[i] = Some(result.to_json());
                }
            }
            anyhow::ensure!(
                rows[0] == rows[1],
                "{kind} since {label}: the rollup query differs from the reference"
            );
            let [before, after] = times.map(median);
            println!(
                "| {kind} | {label} | {:.1} | {:.1} | {:.1}× |",
                before.as_secs_f64() * 1e3,
                after.as_secs_f64() * 1e3,
                before.as_secs_f64() / after.as_secs_f64().max(1e-9)
            );
        }
    }
    Ok(())
}
