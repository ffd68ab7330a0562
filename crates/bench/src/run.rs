//! The whole benchmark: plan, seed, every scenario, the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{Args, Cache, Database};
use crate::plan::{self, Scenario};
use crate::report::{self, RunResults, ScenarioResult};
use crate::scrape::{self, Snapshot};
use crate::seed::{self, SeededDatabase};
use crate::server::{self, Redis, ServerProcess};
use crate::workload::{Load, Workload};

/// How the run ended, when it got to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every floor cleared and no request failed.
    Passed,
    /// The report is written; a floor failed or requests failed.
    Failed,
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let started_at = Utc::now();
    let binary = server_binary(&args)?;
    let scenarios = plan::scenarios(&args);
    if scenarios.is_empty() {
        bail!("--databases and --caches leave no scenario to run");
    }
    print_plan(&args, &scenarios);

    let config = seed::generator_config(&args);
    let guilds = seed::guilds_by_size(&config);
    let now_ms = started_at.timestamp_millis();
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let since = vec![None, Some(now_ms - DAY_MS), Some(now_ms - 7 * DAY_MS)];

    let redis = if scenarios.iter().any(|s| s.cache == Cache::Redis) {
        Some(Redis::start()?)
    } else {
        None
    };
    let mut databases: Vec<SeededDatabase> = Vec::new();
    for &database in &args.databases {
        if scenarios.iter().any(|s| s.database == database) {
            databases.push(seed::seed(database, &args, &config).await?);
        }
    }
    let seeded_in = started.elapsed();
    if args.seed_only {
        return Ok(Outcome::Passed);
    }
    let remaining = plan::estimate(&args, &scenarios).saturating_sub(
        args.databases
            .iter()
            .map(|d| Duration::from_secs_f64(args.events as f64 / plan::seeding_rate(*d)))
            .sum(),
    );
    eprintln!(
        "seeded in {:.0} s; {} scenarios to run, about {:.1} min",
        seeded_in.as_secs_f64(),
        scenarios.len(),
        remaining.as_secs_f64() / 60.0
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize + 64)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;
    let workdir = tempfile::Builder::new()
        .prefix("spywatcher-bench-servers-")
        .tempdir()
        .context("creating a temporary directory for the servers")?;

    let mut results = Vec::with_capacity(scenarios.len());
    for (i, scenario) in scenarios.iter().enumerate() {
        let database = databases
            .iter()
            .find(|d| d.database == scenario.database)
            .context("a scenario's database was not seeded")?;
        let setting = Setting {
            args: &args,
            binary: &binary,
            http: &http,
            redis: redis.as_ref(),
            database_url: &database.url,
            workdir: &workdir.path().join(format!("scenario-{i}")),
            workload: Workload {
                instances: Vec::new(),
                guilds: guilds.iter().map(|(g, _)| g.clone()).collect(),
                since: since.clone(),
                concurrency: args.concurrency,
                read_skew: args.read_skew,
                event_skew: args.skew,
                rate: scenario.rate,
                seed: args.seed,
            },
        };
        let label = format!("[{}/{}] {scenario}", i + 1, scenarios.len());
        let result = run_scenario(&setting, scenario, &label)
            .await
            .with_context(|| format!("scenario {scenario}"))?;
        print_result(&result);
        results.push(result);
    }

    // A server without grace mode reports no stale serves, or none at all.
    let grace_runs: Vec<&ScenarioResult> = results
        .iter()
        .filter(|r| r.scenario.mode == plan::Mode::Grace)
        .collect();
    let grace_reported = grace_runs.is_empty()
        || grace_runs
            .iter()
            .any(|r| r.counts.stale > 0 || r.stats_stale.is_some_and(|n| n > 0));
    let run = RunResults {
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        knobs: knobs(&args),
        guild_sizes: guilds.iter().map(|(_, n)| *n).collect(),
        seeding: databases
            .iter()
            .map(|d| (d.database.as_str().to_owned(), d.seeding.clone()))
            .collect(),
        grace_reported,
        scenarios: results,
    };
    write_outputs(&args, &run)
}

/// Writes results.json, report.md and the charts; tells whether the run
/// passed.
fn write_outputs(args: &Args, run: &RunResults) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create it", args.out.display()))?;
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(run).context("serializing the results")?,
    )?;
    write(
        "report.md",
        report::render(run, args.base_rate, args.busy_rate),
    )?;
    let mut charts = Vec::new();
    if crate::charts::over_time(
        run,
        args.busy_rate,
        &args.font,
        &args.out.join("over-time.png"),
    )? {
        charts.push("over-time.png");
    }
    if crate::charts::event_rate(run, &args.font, &args.out.join("event-rate.png"))? {
        charts.push("event-rate.png");
    }

    let floors = report::floor_rows(run, args.base_rate);
    let failures = run.failures();
    eprintln!(
        "\nwrote {} (report.md, results.json{}{})",
        args.out.display(),
        if charts.is_empty() { "" } else { ", " },
        charts.join(", ")
    );
    for row in &floors {
        eprintln!(
            "floors {} {}: {}",
            row.database.as_str(),
            row.cache.as_str(),
            row.checks
                .iter()
                .zip(&report::FLOORS)
                .map(|(c, f)| format!(
                    "{} {} {}",
                    f.figure,
                    c.value
                        .map_or("n/a".into(), |v| format!("{v:.1}{}", f.unit)),
                    if c.pass { "PASS" } else { "FAIL" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!("failed requests: {failures}");
    let passed = failures == 0 && floors.iter().all(|r| r.passes());
    Ok(if passed {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}

/// What one scenario needs besides itself.
struct Setting<'a> {
    args: &'a Args,
    binary: &'a Path,
    http: &'a reqwest::Client,
    redis: Option<&'a Redis>,
    database_url: &'a str,
    workdir: &'a Path,
    /// Everything but the instances, which the scenario starts.
    workload: Workload,
}

async fn run_scenario(
    cx: &Setting<'_>,
    scenario: &Scenario,
    label: &str,
) -> anyhow::Result<ScenarioResult> {
    let redis_url = match (scenario.cache, cx.redis) {
        (Cache::Redis, Some(redis)) => {
            redis.flush()?;
            Some(redis.url())
        }
        (Cache::Redis, None) => bail!("no Redis was started"),
        _ => None,
    };
    let mut servers = Vec::new();
    for _ in 0..cx.args.instances {
        let env = server::server_env(
            scenario,
            cx.database_url,
            redis_url.as_deref(),
            cx.args.grace,
            server::server_port(),
        );
        match ServerProcess::start(cx.binary, &env, cx.workdir, cx.http).await {
            Ok(s) => servers.push(s),
            Err(e) => {
                for s in servers {
                    s.stop().await;
                }
                return Err(e);
            }
        }
    }
    let mut workload = cx.workload.clone();
    workload.instances = servers.iter().map(|s| s.base_url.clone()).collect();
    let measured = measure(cx, &workload, &servers, label).await;
    let redis_memory = match scenario.cache {
        Cache::Redis => cx.redis.and_then(Redis::used_memory_human),
        _ => None,
    };
    let logs: Vec<String> = servers.iter().map(ServerProcess::log_tail).collect();
    for s in servers {
        s.stop().await;
    }
    let (measurement, before, after) = measured?;
    let mut result = ScenarioResult::new(
        *scenario,
        cx.args.instances,
        &measurement,
        &before,
        &after,
        redis_memory,
    );
    if result.failures > 0 {
        // What the servers said about it: the report must explain a failure.
        result.server_log = Some(logs.join("\n"));
    }
    Ok(result)
}

async fn measure(
    cx: &Setting<'_>,
    workload: &Workload,
    servers: &[ServerProcess],
    label: &str,
) -> anyhow::Result<(crate::workload::Measurement, Snapshot, Snapshot)> {
    let warmup = Duration::from_secs_f64(cx.args.warmup);
    let duration = Duration::from_secs_f64(cx.args.duration);
    let bar = ProgressBar::new((warmup + duration).as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {msg:>9} [{bar:40}] {elapsed}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let load = Load::start(cx.http, workload)?;
    let started = Instant::now();
    bar.set_message("warm-up");
    tick_until(&bar, started, warmup).await;
    let before = snapshot_all(cx.http, servers).await?;
    load.open_window();
    bar.set_message("measuring");
    tick_until(&bar, started, warmup + duration).await;
    load.close_window();
    let after = snapshot_all(cx.http, servers).await?;
    bar.set_message("stopping");
    let measurement = load.stop().await?;
    bar.finish_and_clear();
    Ok((measurement, before, after))
}

/// Moves the bar until `until` after `started`.
async fn tick_until(bar: &ProgressBar, started: Instant, until: Duration) {
    loop {
        let elapsed = started.elapsed();
        bar.set_position(elapsed.as_millis() as u64);
        if elapsed >= until {
            return;
        }
        tokio::time::sleep((until - elapsed).min(Duration::from_millis(200))).await;
    }
}

async fn snapshot_all(
    http: &reqwest::Client,
    servers: &[ServerProcess],
) -> anyhow::Result<Snapshot> {
    let mut total = Snapshot::default();
    for s in servers {
        total.add(&scrape::snapshot(http, &s.base_url).await?);
    }
    Ok(total)
}

/// `--server`, or `spywatcher` next to this program.
fn server_binary(args: &Args) -> anyhow::Result<PathBuf> {
    let path = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("spywatcher"),
    };
    if !path.is_file() {
        bail!(
            "--server {}: no such file (build it with `cargo build --release -p spywatcher`, or pass --server PATH)",
            path.display()
        );
    }
    Ok(path)
}

fn print_plan(args: &Args, scenarios: &[Scenario]) {
    let eta = plan::estimate(args, scenarios);
    eprintln!(
        "spywatcher-bench: {} events over {} guilds (skew {}) into {}; {} scenarios of {} s warm-up + {} s measured, {} readers, {} instance(s)",
        args.events,
        args.guilds,
        args.skew,
        args.databases
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
        scenarios.len(),
        args.warmup,
        args.duration,
        args.concurrency,
        args.instances
    );
    for (i, s) in scenarios.iter().enumerate() {
        eprintln!("  {:>2}. {s}", i + 1);
    }
    eprintln!(
        "ETA: about {:.1} min (seeding at ~{:.0}k events/s on SQLite, ~{:.0}k on PostgreSQL, {} s per scenario)",
        eta.as_secs_f64() / 60.0,
        plan::seeding_rate(Database::Sqlite) / 1000.0,
        plan::seeding_rate(Database::Postgres) / 1000.0,
        args.warmup + args.duration + plan::SCENARIO_OVERHEAD.as_secs_f64()
    );
}

fn print_result(r: &ScenarioResult) {
    if r.failures > 0 {
        eprintln!(
            "{}: failed reads by status {:?}, failed events by status {:?} (0: no answer); server log:\n{}",
            r.scenario,
            r.counts.failed,
            r.event_failures,
            r.server_log.as_deref().unwrap_or_default()
        );
    }
    eprintln!(
        "{}: {:.0} reads/s, p50 {:.2} ms, p99 {:.1} ms, hit {:.1} % (from cache {:.1} %), {:.1} DB queries / 1,000 reads, {} events, {} failures",
        r.scenario,
        r.throughput,
        r.p50_ms,
        r.p99_ms,
        r.hit_rate,
        r.served_from_cache,
        r.db_queries_per_1000_reads,
        r.events_posted,
        r.failures
    );
}

/// The knobs as the results record them (the PostgreSQL URL without its
/// password).
fn knobs(args: &Args) -> serde_json::Value {
    json!({
        "databases": args.databases,
        "caches": args.caches,
        "rates": args.rates,
        "base_rate": args.base_rate,
        "busy_rate": args.busy_rate,
        "grace": args.grace,
        "warmup": args.warmup,
        "duration": args.duration,
        "concurrency": args.concurrency,
        "instances": args.instances,
        "guilds": args.guilds,
        "users": args.users,
        "events": args.events,
        "days": args.days,
        "skew": args.skew,
        "read_skew": args.read_skew,
        "seed": args.seed,
        "postgres_url": seed::redact(&args.postgres_url),
    })
}
