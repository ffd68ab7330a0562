//! The cache layer's load benchmarks (issue 2): every figure of BENCHMARKS.md
//! "Cache layer", measured side by side in one run against a private
//! redis-server that this program starts (and stops) itself.
//!
//! ```text
//! cargo run --release -p spywatcher-cache --example load            # full run
//! cargo run --release -p spywatcher-cache --example load -- --quick # smoke run
//! ```
//! `scripts/bench-cache` runs it (and the criterion benches) and prints the
//! table that goes into BENCHMARKS.md.
//!
//! Each comparison runs its two sides in alternating rounds in this one
//! process, so that load from elsewhere on the machine weighs on both alike;
//! the ratios are computed from the sums over the rounds.
//!
//! 1. `get` hit through Redis vs raw `GET`s (same client crate, same
//!    `MultiplexedConnection` set-up), 50 concurrent callers, 1 KiB values; and
//!    `redis-benchmark` on the same server beside them.
//! 2. Embedded `get` hit vs a bare `moka::future::Cache` get: bytes
//!    (`get_json`) and typed (`get::<T>` vs moka get + `serde_json`), one task
//!    (latency) and 50 tasks (throughput).
//! 3. `invalidate_by_tag` at 1,000 / 10,000 / 100,000 entries vs SMEMBERS +
//!    DEL (one DEL, and chunks of 1,000), while another connection PINGs every
//!    millisecond: the longest PING during the invalidation and during the
//!    background sweep that follows.
//! 4. A pass reading 100,000 invalidated entries vs a pass over 100,000 keys
//!    never set; and Redis memory before, right after, and after the sweep.
//! 5. Loader runs under a 1,000-caller stampede on one cold key.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use spywatcher_cache::{Cache, CacheConfig, SetOptions};
use spywatcher_testkit::redis::RedisServer;

#[path = "../benches/support/value.rs"]
mod value;
#[macro_use]
#[path = "../benches/support/measure.rs"]
mod measure;

use measure::{fmt_dur, fmt_rate, median};
use value::{Row, VALUE_BYTES, value_1k};

const CALLERS: usize = 50;
const HOT_KEYS: usize = 1_000;
const LONG_TTL: Duration = Duration::from_secs(3_600);

struct Opts {
    quick: bool,
    /// Length of one measuring round of a throughput comparison.
    round: Duration,
    /// Entry counts of figure 3; the last one is also figure 4's.
    sizes: Vec<usize>,
    only: Option<Vec<u32>>,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect());
        if quick {
            Opts {
                quick,
                round: Duration::from_millis(400),
                sizes: vec![1_000, 10_000],
                only,
            }
        } else {
            Opts {
                quick,
                round: Duration::from_secs(2),
                sizes: vec![1_000, 10_000, 100_000],
                only,
            }
        }
    }

    fn wants(&self, figure: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&figure))
    }
}

/// One line of the final table.
struct Figure {
    id: &'static str,
    what: String,
    target: String,
    measured: String,
    met: Option<bool>,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let started = Instant::now();
    eprintln!(
        "[load] private redis-server on port {} ({}), {} cores",
        server.port(),
        server
            .cli(&["INFO", "server"])
            .lines()
            .find(|l| l.starts_with("redis_version"))
            .unwrap_or("?")
            .trim(),
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut figures = Vec::new();
    if opts.wants(1) {
        figures.extend(figure_1(&server, &opts).await?);
    }
    if opts.wants(2) {
        figures.extend(figure_2(&opts).await);
    }
    if opts.wants(3) || opts.wants(4) {
        figures.extend(figures_3_4(&server, &opts).await?);
    }
    if opts.wants(5) {
        figures.extend(figure_5(&server).await?);
    }

    println!();
    println!("| # | figure | target | measured | met |");
    println!("| --- | --- | --- | --- | --- |");
    for f in &figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "(info)",
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            f.id, f.what, f.target, f.measured, met
        );
    }
    eprintln!("[load] done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[load] {}", msg.as_ref());
}

// ---------------------------------------------------------------- helpers

/// The defaults on the private server, without the in-process L1 tier: every
/// figure here is about what goes through Redis.
fn redis_config(server: &RedisServer) -> CacheConfig {
    let defaults = CacheConfig::redis(server.url());
    CacheConfig {
        l1_max_bytes: 0,
        // For experiments only: the sweeper's batch (0 stops sweeping).
        sweep_batch: std::env::var("LOAD_SWEEP_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.sweep_batch),
        ..defaults
    }
}

/// A raw connection set up exactly as the cache's own.
async fn raw_connection(server: &RedisServer) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(server.url())?;
    let config = spywatcher_cache::redis_connection_config(CacheConfig::default().connect_timeout);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// Mean nanoseconds of `op` run `n` times in a row in this task.
async fn latency_ns<F, Fut>(n: usize, mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let begun = Instant::now();
    for i in 0..n {
        op(i).await;
    }
    begun.elapsed().as_nanos() as f64 / n as f64
}

/// Every worker of the pass takes the next index until `n` are done; returns seconds.
async fn pass<F, Fut>(n: usize, tasks: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let begun = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("pass task");
    }
    begun.elapsed().as_secs_f64()
}

// ------------------------------------------------------- figure 1: Redis get

async fn figure_1(server: &RedisServer, opts: &Opts) -> anyhow::Result<Vec<Figure>> {
    log("figure 1: get hit through Redis vs raw GET, 50 callers, 1 KiB values");
    let cache = Cache::new(redis_config(server))?;
    let raw = raw_connection(server).await?;
    let json = serde_json::to_vec(&value_1k())?;
    let value = value_1k();
    let tags = ["guild:1", "analytics:ghosts"];
    let keys: Arc<Vec<String>> = Arc::new(
        (0..HOT_KEYS)
            .map(|i| format!("analytics:ghosts:1:{i}"))
            .collect(),
    );
    let raw_keys: Arc<Vec<String>> = Arc::new((0..HOT_KEYS).map(|i| format!("raw:{i}")).collect());
    let entries = keys.iter().map(|k| {
        (
            k.clone(),
            value.clone(),
            SetOptions::ttl(LONG_TTL).tags(tags),
        )
    });
    anyhow::ensure!(cache.warm(entries).await == HOT_KEYS as u64, "warm failed");
    let mut pipe = redis::pipe();
    for k in raw_keys.iter() {
        pipe.set(k, &json[..]).ignore();
    }
    pipe.exec_async(&mut raw.clone()).await?;
    // redis-benchmark's GET reads the literal key "key:__rand_int__": give it a 1 KiB value.
    redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg(vec![b'x'; VALUE_BYTES])
        .exec_async(&mut raw.clone())
        .await?;
    let (ours_miss, raw_miss) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    // `--profile-ours` / `--profile-raw`: one side alone for 10 s, to profile.
    for (flag, ours_side) in [("--profile-ours", true), ("--profile-raw", false)] {
        if std::env::args().any(|a| a == flag) {
            let length = Duration::from_secs(10);
            let rate = if ours_side {
                let state = (cache.clone(), keys.clone());
                throughput!(CALLERS, length, state, |(cache, keys), i| {
                    std::hint::black_box(cache.get_json(&keys[i % HOT_KEYS]).await);
                })
            } else {
                let state = (raw.clone(), raw_keys.clone());
                throughput!(CALLERS, length, state, |(mut raw, keys), i| {
                    let v: Option<Vec<u8>> = raw.get(&keys[i % HOT_KEYS]).await.unwrap_or(None);
                    std::hint::black_box(v);
                })
            };
            log(format!("{flag}: {}", fmt_rate(rate)));
            return Ok(Vec::new());
        }
    }
    // Short alternating slices, many of them: the load other work puts on
    // this machine changes within seconds, and both sides should see it alike.
    let slices = if opts.quick { 4 } else { 24 };
    let slice = if opts.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_millis(500)
    };
    // Third side, for scale: raw MGETs of exactly the keys a cached read asks
    // for (the entry and its two tags' markers), parsed as plain values.
    let mget_keys: Arc<Vec<[String; 3]>> = Arc::new(
        keys.iter()
            .map(|k| {
                [
                    format!("spywatcher:{k}"),
                    "spywatcher:~t:{guild:1}".to_string(),
                    "spywatcher:~t:{analytics:ghosts}".to_string(),
                ]
            })
            .collect(),
    );
    let mut ours_rates = Vec::new();
    let mut raw_rates = Vec::new();
    let mut mget_rates = Vec::new();
    for pair in 0..=slices {
        let length = if pair == 0 { slice / 2 } else { slice };
        let order = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let (mut ours, mut rawr) = (0.0, 0.0);
        for ours_first in order {
            if ours_first {
                let state = (cache.clone(), keys.clone(), ours_miss.clone());
                ours = throughput!(CALLERS, length, state, |(cache, keys, miss), i| {
                    if cache.get_json(&keys[i % HOT_KEYS]).await.is_none() {
                        miss.fetch_add(1, Ordering::Relaxed);
                    }
                });
            } else {
                let state = (raw.clone(), raw_keys.clone(), raw_miss.clone());
                rawr = throughput!(CALLERS, length, state, |(mut raw, keys, miss), i| {
                    let v: Option<Vec<u8>> = raw.get(&keys[i % HOT_KEYS]).await.unwrap_or(None);
                    if v.is_none() {
                        miss.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        let state = (raw.clone(), mget_keys.clone(), raw_miss.clone());
        let mget = throughput!(CALLERS, length, state, |(mut raw, keys, miss), i| {
            let v: Vec<Option<Vec<u8>>> =
                raw.mget(&keys[i % HOT_KEYS][..]).await.unwrap_or_default();
            if v.first().is_none_or(Option::is_none) {
                miss.fetch_add(1, Ordering::Relaxed);
            }
        });
        if pair > 0 {
            ours_rates.push(ours);
            raw_rates.push(rawr);
            mget_rates.push(mget);
        }
    }
    let mut bench_rates = Vec::new();
    for run in 0..if opts.quick { 1 } else { 3 } {
        let bench = redis_benchmark(server)?;
        log(format!("  redis-benchmark run {run}: {}", fmt_rate(bench)));
        bench_rates.push(bench);
    }
    anyhow::ensure!(ours_miss.load(Ordering::Relaxed) == 0, "cache gets missed");
    anyhow::ensure!(raw_miss.load(Ordering::Relaxed) == 0, "raw gets missed");
    let ours: f64 = ours_rates.iter().sum::<f64>() / ours_rates.len() as f64;
    let rawr: f64 = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    let bench: f64 = bench_rates.iter().sum::<f64>() / bench_rates.len() as f64;
    let mget_ratio = median(
        ours_rates
            .iter()
            .zip(&mget_rates)
            .map(|(o, m)| o / m)
            .collect(),
    );
    let mget_vs_get = median(
        mget_rates
            .iter()
            .zip(&raw_rates)
            .map(|(m, r)| m / r)
            .collect(),
    );
    let pair_ratios: Vec<f64> = ours_rates
        .iter()
        .zip(&raw_rates)
        .map(|(o, r)| o / r)
        .collect();
    let ratio = median(pair_ratios.clone());
    let (lo, hi) = (
        pair_ratios.iter().copied().fold(f64::INFINITY, f64::min),
        pair_ratios.iter().copied().fold(0.0, f64::max),
    );
    log(format!(
        "  ours {} raw {} (means); per-slice ratios {}",
        fmt_rate(ours),
        fmt_rate(rawr),
        pair_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(vec![
        Figure {
            id: "1",
            what: format!(
                "`get` hit through Redis (no L1), {CALLERS} callers, 1 KiB, throughput ours / raw `GET` (same `redis` MultiplexedConnection set-up)"
            ),
            target: "≥ 0.70".into(),
            measured: format!(
                "**{ratio:.2}** (median of {} alternating {:.1} s slices, range {lo:.2}–{hi:.2}; means {} vs {}, ratio of means {:.2})",
                pair_ratios.len(),
                slice.as_secs_f64(),
                fmt_rate(ours),
                fmt_rate(rawr),
                ours / rawr
            ),
            met: Some(ratio >= 0.7),
        },
        Figure {
            id: "1c",
            what: "same, against raw `MGET` of the 3 keys a cached read asks for (entry + its 2 tags' markers)".into(),
            target: "(context)".into(),
            measured: format!(
                "ours / raw MGET **{mget_ratio:.2}**; raw MGET / raw GET {mget_vs_get:.2} ({})",
                fmt_rate(mget_rates.iter().sum::<f64>() / mget_rates.len() as f64)
            ),
            met: None,
        },
        Figure {
            id: "1b",
            what: format!(
                "same, beside `redis-benchmark -t get -c 50 -d 1024 -n 200000 -q` ({} on this server)",
                fmt_rate(bench)
            ),
            target: "(context)".into(),
            measured: format!(
                "ours / r-b **{:.2}**, raw / r-b **{:.2}**",
                ours / bench,
                rawr / bench
            ),
            met: None,
        },
    ])
}

/// Runs `redis-benchmark -t get -c 50 -d 1024 -n 200000 -q` against the server; requests per second.
fn redis_benchmark(server: &RedisServer) -> anyhow::Result<f64> {
    let port = server.port().to_string();
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p", &port, "-t", "get", "-c", "50", "-d", "1024", "-n", "200000", "-q",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines end in '\r'; the last "GET: <n> requests per second" is the result.
    text.split(['\r', '\n'])
        .filter_map(|l| l.trim().strip_prefix("GET: "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .next_back()
        .ok_or_else(|| anyhow::anyhow!("cannot parse redis-benchmark output: {text}"))
}

// ---------------------------------------------------- figure 2: embedded get

async fn figure_2(opts: &Opts) -> Vec<Figure> {
    log("figure 2: embedded get vs bare moka::future::Cache get");
    let cache = Cache::new(CacheConfig::embedded()).expect("embedded cache");
    let moka: moka::future::Cache<String, Bytes> = moka::future::Cache::new(100_000);
    let value = value_1k();
    let json = Bytes::from(serde_json::to_vec(&value).unwrap());
    let keys: Arc<Vec<String>> = Arc::new(
        (0..HOT_KEYS)
            .map(|i| format!("analytics:ghosts:1:{i}"))
            .collect(),
    );
    for k in keys.iter() {
        let options = SetOptions::ttl(LONG_TTL).tags(["guild:1", "analytics:ghosts"]);
        assert!(cache.set(k, &value, options).await);
        moka.insert(k.clone(), json.clone()).await;
    }
    let lat_n = if opts.quick { 50_000 } else { 200_000 };
    let rounds = if opts.quick { 3 } else { 9 };

    type Pair = (&'static str, &'static str);
    let kinds: [Pair; 2] = [
        ("`get_json` (bytes)", "moka `get` (Bytes clone)"),
        (
            "`get::<Vec<Row>>`",
            "moka `get` + `serde_json::from_slice::<Vec<Row>>`",
        ),
    ];
    let mut figures = Vec::new();
    for (kind, (ours_name, moka_name)) in kinds.iter().enumerate() {
        let typed = kind == 1;
        // Latency, one task: alternating rounds, median of the rounds.
        let (mut ours_lat, mut moka_lat) = (Vec::new(), Vec::new());
        for round in 0..=rounds {
            let n = if round == 0 { lat_n / 5 } else { lat_n };
            let o = latency_ns(n, |i| {
                let (cache, key) = (&cache, &keys[i % HOT_KEYS]);
                async move {
                    if typed {
                        let v: Option<Vec<Row>> = cache.get(key).await;
                        assert!(std::hint::black_box(v).is_some());
                    } else {
                        assert!(std::hint::black_box(cache.get_json(key).await).is_some());
                    }
                }
            })
            .await;
            let m = latency_ns(n, |i| {
                let (moka, key) = (&moka, &keys[i % HOT_KEYS]);
                async move {
                    let v = moka.get(key).await;
                    if typed {
                        let v: Option<Vec<Row>> = v.map(|b| serde_json::from_slice(&b).unwrap());
                        assert!(std::hint::black_box(v).is_some());
                    } else {
                        assert!(std::hint::black_box(v).is_some());
                    }
                }
            })
            .await;
            if round > 0 {
                ours_lat.push(o);
                moka_lat.push(m);
            }
        }
        // Each round's two sides ran back to back: the median of the
        // per-round ratios resists the machine's load changing between rounds.
        let ratio = median(ours_lat.iter().zip(&moka_lat).map(|(o, m)| o / m).collect());
        let (o, m) = (median(ours_lat), median(moka_lat));
        log(format!(
            "  {ours_name}: {o:.0} ns vs {moka_name}: {m:.0} ns, 1 task (ratio {ratio:.2})"
        ));
        figures.push(Figure {
            id: if typed { "2c" } else { "2a" },
            what: format!("embedded {ours_name} vs {moka_name}: latency, 1 task (ours / moka)"),
            target: "≤ 1.5×".into(),
            measured: format!("**{ratio:.2}×** (medians {o:.0} ns vs {m:.0} ns)"),
            met: Some(ratio <= 1.5),
        });

        // Throughput, 50 tasks.
        let (mut ours_tp, mut moka_tp) = (Vec::new(), Vec::new());
        for round in 0..=rounds {
            let length = if round == 0 {
                Duration::from_millis(200)
            } else {
                opts.round / 2
            };
            let o = throughput!(
                CALLERS,
                length,
                (cache.clone(), keys.clone()),
                |(c, k), i| {
                    if typed {
                        let v: Option<Vec<Row>> = c.get(&k[i % HOT_KEYS]).await;
                        assert!(std::hint::black_box(v).is_some());
                    } else {
                        assert!(std::hint::black_box(c.get_json(&k[i % HOT_KEYS]).await).is_some());
                    }
                }
            );
            let m = throughput!(
                CALLERS,
                length,
                (moka.clone(), keys.clone()),
                |(mc, k), i| {
                    let v = mc.get(&k[i % HOT_KEYS]).await;
                    if typed {
                        let v: Option<Vec<Row>> = v.map(|b| serde_json::from_slice(&b).unwrap());
                        assert!(std::hint::black_box(v).is_some());
                    } else {
                        assert!(std::hint::black_box(v).is_some());
                    }
                }
            );
            if round > 0 {
                ours_tp.push(o);
                moka_tp.push(m);
            }
        }
        let ratio = median(ours_tp.iter().zip(&moka_tp).map(|(o, m)| o / m).collect());
        let (o, m) = (median(ours_tp), median(moka_tp));
        log(format!(
            "  {ours_name}: {} vs {moka_name}: {}, {CALLERS} tasks",
            fmt_rate(o),
            fmt_rate(m)
        ));
        figures.push(Figure {
            id: if typed { "2d" } else { "2b" },
            what: format!(
                "embedded {ours_name} vs {moka_name}: throughput, {CALLERS} tasks (ours / moka)"
            ),
            target: "≥ 0.80".into(),
            measured: format!(
                "**{ratio:.2}** (medians {} vs {})",
                fmt_rate(o),
                fmt_rate(m)
            ),
            met: Some(ratio >= 0.8),
        });
    }
    figures
}

// ------------------------------------------- figures 3 and 4: invalidation

/// PINGs Redis from its own thread and connection every ~1 ms, recording
/// when each PING started and how long it took.
struct Pinger {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<(Instant, Duration)>>,
}

impl Pinger {
    fn start(server: &RedisServer) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url();
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let client = redis::Client::open(url).expect("url");
            let mut con = client.get_connection().expect("pinger connection");
            let mut samples = Vec::with_capacity(100_000);
            while !flag.load(Ordering::Relaxed) {
                let begun = Instant::now();
                let _: String = redis::cmd("PING").query(&mut con).expect("PING");
                samples.push((begun, begun.elapsed()));
                thread::sleep(Duration::from_millis(1));
            }
            samples
        });
        thread::sleep(Duration::from_millis(20));
        Pinger { stop, handle }
    }

    fn finish(self) -> Vec<(Instant, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("pinger")
    }
}

/// The longest PING overlapping [from, to], and how many PINGs did.
fn max_stall(samples: &[(Instant, Duration)], from: Instant, to: Instant) -> (Duration, usize) {
    let overlapping: Vec<Duration> = samples
        .iter()
        .filter(|(start, rtt)| *start <= to && *start + *rtt >= from)
        .map(|(_, rtt)| *rtt)
        .collect();
    (
        overlapping.iter().copied().max().unwrap_or_default(),
        overlapping.len(),
    )
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    dbsize: u64,
    used: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} keys / {:.1} MiB",
            self.dbsize,
            self.used as f64 / 1048576.0
        )
    }
}

async fn memory(admin: &mut MultiplexedConnection) -> anyhow::Result<Memory> {
    let dbsize: u64 = redis::cmd("DBSIZE").query_async(admin).await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(admin).await?;
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Memory { dbsize, used })
}

/// `n` entries of 1 KiB under `tag` (and a second, per-entry-group tag), TTL 1 h.
async fn populate(cache: &Cache, tag: &str, prefix: &str, n: usize) {
    let value = value_1k();
    let mut start = 0;
    while start < n {
        let end = (start + 5_000).min(n);
        let entries = (start..end).map(|i| {
            let options =
                SetOptions::ttl(LONG_TTL).tags([tag.to_string(), format!("guild:{}", i % 100)]);
            (format!("{prefix}:{i}"), value.clone(), options)
        });
        let stored = cache.warm(entries).await;
        assert_eq!(stored, (end - start) as u64, "warm stored everything");
        start = end;
    }
}

/// Starts recording every command that runs 200 µs or longer in Redis.
async fn slowlog_reset(admin: &mut MultiplexedConnection) -> anyhow::Result<()> {
    for (name, value) in [
        ("slowlog-log-slower-than", "200"),
        ("slowlog-max-len", "100000"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(admin)
            .await?;
    }
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(admin)
        .await?;
    Ok(())
}

/// The longest command Redis ran since [`slowlog_reset`] (what any other
/// client may have waited behind), and its name.
async fn slowest_command(admin: &mut MultiplexedConnection) -> anyhow::Result<(Duration, String)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(100_000)
        .query_async(admin)
        .await?;
    let mut slowest = (Duration::ZERO, "-".to_string());
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let micros: u64 = fields
            .get(2)
            .and_then(|v| redis::from_redis_value_ref(v).ok())
            .unwrap_or(0);
        let name: String = match fields.get(3) {
            Some(redis::Value::Array(args)) => args
                .first()
                .and_then(|a| redis::from_redis_value_ref::<String>(a).ok())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if Duration::from_micros(micros) > slowest.0 {
            slowest = (Duration::from_micros(micros), name);
        }
    }
    Ok(slowest)
}

/// Calls of GET, MGET and EXISTS so far (INFO commandstats).
fn read_commands(server: &RedisServer) -> ReadCommands {
    let stats = server.cli(&["INFO", "commandstats"]);
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix("calls="))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ReadCommands(
        calls("cmdstat_get:"),
        calls("cmdstat_mget:"),
        calls("cmdstat_exists:"),
    )
}

#[derive(Clone, Copy)]
struct ReadCommands(u64, u64, u64);

impl std::ops::Sub for ReadCommands {
    type Output = ReadCommands;
    fn sub(self, other: ReadCommands) -> ReadCommands {
        ReadCommands(self.0 - other.0, self.1 - other.1, self.2 - other.2)
    }
}

async fn wait_for_sweep(
    admin: &mut MultiplexedConnection,
    within: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let pending: u64 = admin.exists("spywatcher:~sweep").await?;
        if pending == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(false)
}

async fn figures_3_4(server: &RedisServer, opts: &Opts) -> anyhow::Result<Vec<Figure>> {
    let cache = Cache::new(redis_config(server))?;
    let mut raw = raw_connection(server).await?;
    let mut admin = raw_connection(server).await?;
    let mut figures = Vec::new();

    // Idle PING, for scale.
    let pinger = Pinger::start(server);
    let from = Instant::now();
    // As long as a sweep lasts: the longest PING of an idle Redis over a few
    // seconds shows what this machine's scheduling alone costs.
    let idle_for = Duration::from_secs(if opts.quick { 1 } else { 4 });
    tokio::time::sleep(idle_for).await;
    let (idle, _) = max_stall(&pinger.finish(), from, Instant::now());
    log(format!(
        "figure 3: idle PING max {} (over {} s)",
        fmt_dur(idle),
        idle_for.as_secs()
    ));

    let mut flat = Vec::new();
    let mut biggest = None;
    if opts.wants(3) {
        // Loads the invalidation script into Redis: otherwise the first size
        // measured would also time a `NOSCRIPT` reply and a `SCRIPT LOAD`.
        cache.invalidate_by_tag("bench:warm-up").await;
        for &n in &opts.sizes {
            let _: () = redis::cmd("FLUSHDB").query_async(&mut admin).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let base = memory(&mut admin).await?;
            // Ours.
            let tag = format!("bench:{n}");
            populate(&cache, &tag, &format!("ours{n}"), n).await;
            let before = memory(&mut admin).await?;
            slowlog_reset(&mut admin).await?;
            let pinger = Pinger::start(server);
            let t0 = Instant::now();
            let count = cache.invalidate_by_tag(&tag).await;
            let ours = t0.elapsed();
            let t1 = Instant::now();
            let right_after = memory(&mut admin).await?;
            let swept = wait_for_sweep(&mut admin, Duration::from_secs(120)).await?;
            let t2 = Instant::now();
            let samples = pinger.finish();
            let after = memory(&mut admin).await?;
            let ours_slowest = slowest_command(&mut admin).await?;
            anyhow::ensure!(
                count == n as u64,
                "invalidate counted {count}, expected {n}"
            );
            anyhow::ensure!(swept, "sweep did not finish");
            let (stall_inv, _) = max_stall(&samples, t0, t1);
            let (stall_sweep, pings) = max_stall(&samples, t1, t2);

            // The reference way, on the same kind of entries: SMEMBERS, then DEL.
            let mut reference = Vec::new();
            for chunked in [false, true] {
                let tag = format!("ref:{n}:{chunked}");
                populate(&cache, &tag, &format!("ref{n}{chunked}"), n).await;
                let set = format!("spywatcher:~m:{{{tag}}}");
                slowlog_reset(&mut admin).await?;
                let pinger = Pinger::start(server);
                let t0 = Instant::now();
                let members: Vec<String> = raw.smembers(&set).await?;
                let deleted: u64 = if chunked {
                    let mut deleted = 0;
                    for chunk in members.chunks(1_000) {
                        deleted += raw.del::<_, u64>(chunk).await?;
                    }
                    deleted
                } else {
                    raw.del(&members).await?
                };
                let _: u64 = raw.del(&set).await?;
                let took = t0.elapsed();
                let t1 = Instant::now();
                let samples = pinger.finish();
                anyhow::ensure!(deleted == n as u64, "reference deleted {deleted}");
                let (stall, _) = max_stall(&samples, t0, t1);
                reference.push((took, stall, slowest_command(&mut admin).await?));
            }
            log(format!(
                "  {n} entries: ours {} (PING max {} during, {} during the sweep of {:.1} s, {pings} PINGs); \
                 SMEMBERS+DEL {} (PING max {}), chunked {} (PING max {}); memory {base} -> {before} -> {right_after} -> {after}; \
                 slowest command: ours {} {}, ref {} {} / {} {}",
                fmt_dur(ours),
                fmt_dur(stall_inv),
                fmt_dur(stall_sweep),
                (t2 - t1).as_secs_f64(),
                fmt_dur(reference[0].0),
                fmt_dur(reference[0].1),
                fmt_dur(reference[1].0),
                fmt_dur(reference[1].1),
                fmt_dur(ours_slowest.0),
                ours_slowest.1,
                fmt_dur(reference[0].2.0),
                reference[0].2.1,
                fmt_dur(reference[1].2.0),
                reference[1].2.1,
            ));
            flat.push((n, ours, reference.clone()));
            biggest = Some((
                n,
                ours,
                reference,
                stall_inv,
                stall_sweep,
                t2 - t1,
                [base, before, right_after, after],
                ours_slowest,
            ));
        }
    }
    let _: () = redis::cmd("FLUSHDB").query_async(&mut admin).await?;

    if let Some((n, ours, reference, stall_inv, stall_sweep, sweep_took, mem, ours_slowest)) =
        biggest
    {
        let speedup = reference[0].0.as_secs_f64() / ours.as_secs_f64();
        let speedup_chunked = reference[1].0.as_secs_f64() / ours.as_secs_f64();
        figures.push(Figure {
            id: "3a",
            what: format!("`invalidate_by_tag` on {n} entries vs SMEMBERS + DEL (one DEL / DEL chunks of 1,000)"),
            target: "≥ 100× faster".into(),
            measured: format!(
                "**{speedup:.0}×** / **{speedup_chunked:.0}×** ({} vs {} / {})",
                fmt_dur(ours),
                fmt_dur(reference[0].0),
                fmt_dur(reference[1].0)
            ),
            met: Some(speedup.min(speedup_chunked) >= 100.0),
        });
        let times: Vec<String> = flat
            .iter()
            .map(|(n, ours, r)| format!("{n}: {} (ref {})", fmt_dur(*ours), fmt_dur(r[0].0)))
            .collect();
        let max = flat.iter().map(|f| f.1).max().unwrap_or_default();
        let min = flat.iter().map(|f| f.1).min().unwrap_or_default();
        figures.push(Figure {
            id: "3b",
            what: "`invalidate_by_tag` time across entry counts".into(),
            target: "flat".into(),
            measured: times.join("; "),
            // Flat: the largest within 3x of the smallest while entries grow 100x.
            met: Some(max.as_secs_f64() <= 3.0 * min.as_secs_f64().max(1e-4)),
        });
        let stall = stall_inv.max(stall_sweep);
        figures.push(Figure {
            id: "3c",
            what: format!(
                "other client's PING (every ~1 ms, own connection) max latency: during ours on {n} entries and the sweep after it ({:.1} s)",
                sweep_took.as_secs_f64()
            ),
            target: "< 5 ms".into(),
            measured: format!(
                "**{}** (invalidation {}, sweep {}; idle {})",
                fmt_dur(stall),
                fmt_dur(stall_inv),
                fmt_dur(stall_sweep),
                fmt_dur(idle)
            ),
            met: Some(stall < Duration::from_millis(5)),
        });
        figures.push(Figure {
            id: "3d",
            what: format!("same PING, during the reference way on {n} entries (one DEL / chunks)"),
            target: "(reference)".into(),
            measured: format!("{} / {}", fmt_dur(reference[0].1), fmt_dur(reference[1].1)),
            met: None,
        });
        figures.push(Figure {
            id: "3e",
            what: format!(
                "longest single command in Redis (SLOWLOG): ours on {n} entries incl. sweep / reference one DEL / chunks"
            ),
            target: "< 5 ms (ours)".into(),
            measured: format!(
                "**{}** ({}) / {} ({}) / {} ({})",
                fmt_dur(ours_slowest.0),
                ours_slowest.1,
                fmt_dur(reference[0].2.0),
                reference[0].2.1,
                fmt_dur(reference[1].2.0),
                reference[1].2.1
            ),
            met: Some(ours_slowest.0 < Duration::from_millis(5)),
        });
        let [base, before, right_after, after] = mem;
        figures.push(Figure {
            id: "4b",
            what: format!(
                "Redis memory of {n} invalidated entries (TTL 1 h): empty / before invalidation / right after / after the sweep ({:.1} s)",
                sweep_took.as_secs_f64()
            ),
            target: "reclaimed without waiting for the TTL".into(),
            measured: format!("{base} / {before} / {right_after} / **{after}**"),
            // What stays: the tags' markers (one per tag, TTL 1 h), 101 here.
            met: Some(
                after.dbsize <= base.dbsize + 101
                    && after.used < base.used + (before.used - base.used) / 20,
            ),
        });
    }

    if opts.wants(4) {
        let n = *opts.sizes.last().unwrap();
        log(format!(
            "figure 4: reading {n} invalidated entries vs {n} keys never set, {CALLERS} callers"
        ));
        let (mut stale_s, mut never_s) = (0.0, 0.0);
        let mut per_round = Vec::new();
        for round in 0..if opts.quick { 2 } else { 4 } {
            let tag = format!("read:{round}");
            let prefix = format!("read{round}");
            // A fresh cache each round, as a process that wrote these entries
            // itself: its table of read hints holds these keys, not the
            // 300,000 of figure 3 (see the command counts logged below).
            let cache = Cache::new(redis_config(server))?;
            populate(&cache, &tag, &prefix, n).await;
            let hits = Arc::new(AtomicU64::new(0));
            let read_pass = |keys: String| {
                let (c, h) = (cache.clone(), hits.clone());
                pass(n, CALLERS, move |i| {
                    let (c, h, key) = (c.clone(), h.clone(), format!("{keys}:{i}"));
                    async move {
                        if c.get_json(&key).await.is_some() {
                            h.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            // For scale: the same pass while the entries are still current.
            let hit = read_pass(prefix.clone()).await;
            anyhow::ensure!(
                hits.swap(0, Ordering::Relaxed) == n as u64,
                "hit pass missed"
            );
            // Alternate which pass goes first; the invalidated pass always
            // follows its invalidation at once (the sweeper may run meanwhile).
            let (stale, never, stale_cmds) = if round % 2 == 0 {
                cache.invalidate_by_tag(&tag).await;
                let before = read_commands(server);
                let stale = read_pass(prefix.clone()).await;
                let stale_cmds = read_commands(server) - before;
                (stale, read_pass(format!("never{round}")).await, stale_cmds)
            } else {
                let never = read_pass(format!("never{round}")).await;
                cache.invalidate_by_tag(&tag).await;
                let before = read_commands(server);
                let stale = read_pass(prefix.clone()).await;
                (stale, never, read_commands(server) - before)
            };
            log(format!(
                "  round {round}: hit pass before invalidation {hit:.3} s; \
                 the invalidated pass sent {} GET, {} MGET, {} EXISTS",
                stale_cmds.0, stale_cmds.1, stale_cmds.2
            ));
            anyhow::ensure!(
                hits.load(Ordering::Relaxed) == 0,
                "an invalidated entry was read"
            );
            log(format!(
                "  round {round}: invalidated {stale:.3} s, never set {never:.3} s ({:.2}×)",
                stale / never
            ));
            per_round.push(stale / never);
            stale_s += stale;
            never_s += never;
            let _: () = redis::cmd("FLUSHDB").query_async(&mut admin).await?;
        }
        let ratio = stale_s / never_s;
        figures.push(Figure {
            id: "4a",
            what: format!("one pass of `get` over {n} just-invalidated entries vs over {n} keys never set ({CALLERS} callers)"),
            target: "≤ 1.5×".into(),
            measured: format!(
                "**{ratio:.2}×** ({:.2} s vs {:.2} s over {} rounds; per round {})",
                stale_s,
                never_s,
                per_round.len(),
                per_round.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
            ),
            met: Some(ratio <= 1.5),
        });
    }
    Ok(figures)
}

// ------------------------------------------------------ figure 5: stampede

async fn figure_5(server: &RedisServer) -> anyhow::Result<Vec<Figure>> {
    log("figure 5: 1,000 concurrent remember calls on one cold key");
    let mut figures = Vec::new();
    for instances in [1usize, 4] {
        let caches: Vec<Cache> = (0..instances)
            .map(|_| Cache::new(redis_config(server)))
            .collect::<Result<_, _>>()?;
        let runs = Arc::new(AtomicU64::new(0));
        let key = format!("stampede:{instances}");
        let barrier = Arc::new(tokio::sync::Barrier::new(1_000));
        let handles: Vec<_> = (0..1_000)
            .map(|i| {
                let (cache, runs, key, barrier) = (
                    caches[i % instances].clone(),
                    runs.clone(),
                    key.clone(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .remember(&key, LONG_TTL, &["stampede"], || async {
                            runs.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, std::convert::Infallible>(value_1k())
                        })
                        .await
                        .map(|v| v.len())
                })
            })
            .collect();
        for h in handles {
            assert!(h.await?.is_ok_and(|n| n > 0));
        }
        let runs = runs.load(Ordering::Relaxed);
        log(format!(
            "  {instances} cache instance(s): {runs} loader run(s)"
        ));
        figures.push(if instances == 1 {
            Figure {
                id: "5",
                what: "loader runs, 1,000 concurrent `remember` on one cold key, through Redis (one `Cache`)".into(),
                target: "1".into(),
                measured: format!("**{runs}**"),
                met: Some(runs == 1),
            }
        } else {
            Figure {
                id: "5b",
                what: format!("same, callers spread over {instances} `Cache` instances sharing the Redis (as separate processes would)"),
                target: "1 per expiry (SPEC 1.2.4)".into(),
                measured: format!("{runs}"),
                met: Some(runs == 1),
            }
        });
    }
    Ok(figures)
}
