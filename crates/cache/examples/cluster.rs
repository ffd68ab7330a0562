//! The Redis Cluster benchmarks (issue 10): every figure of BENCHMARKS.md
//! "Redis Cluster", measured in one run on real 3-master + 3-replica clusters
//! that this program starts itself (`spywatcher_testkit::cluster`), with a
//! private standalone redis-server beside them for the same figures there.
//!
//! ```text
//! cargo run --release -p spywatcher-cache --example cluster -- --help
//! ```
//! `scripts/bench-cluster` builds and runs it and prints the tables that go
//! into BENCHMARKS.md.
//!
//! 1. `get` hit with no L1 against a raw `GET` on a connection of the very
//!    set-up the store uses (`spywatcher_cache::redis_cluster_connection`;
//!    standalone: `redis_connection_config`), 1,000 keys spread over every
//!    master, 1 KiB values: one caller (latency percentiles) and 50 callers
//!    (throughput). The sides alternate in short slices, so load from
//!    elsewhere on the machine weighs on them alike.
//! 2. `invalidate_by_tag` at 1,000 / 10,000 / 100,000 entries under one tag
//!    (written with `warm`), several runs each; then how long the background
//!    sweeper takes to reclaim the largest one, and the masters' memory.
//! 3. Caching through a failover: readers flow (no L1, `remember_json`),
//!    then a master is killed (`RedisCluster::fail_over`), or handed over
//!    with `CLUSTER FAILOVER` (`manual_failover`); hits and loader runs per
//!    50 ms bucket, and when caching was back for every key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use spywatcher_cache::{Cache, CacheConfig, Origin, SetOptions};
use spywatcher_testkit::cluster::RedisCluster;
use spywatcher_testkit::redis::RedisServer;

#[path = "../benches/support/value.rs"]
mod value;
#[macro_use]
#[path = "../benches/support/measure.rs"]
mod measure;

use measure::{fmt_dur, fmt_rate, median};
use value::value_1k;

const CALLERS: usize = 50;
const HOT_KEYS: usize = 1_000;
const LONG_TTL: Duration = Duration::from_secs(3_600);
const HOT_TAGS: [&str; 2] = ["guild:1", "analytics:ghosts"];
/// Figure 3: entries read through the failover, their tags, the readers.
const FAULT_KEYS: usize = 300;
const FAULT_TAGS: usize = 30;
const FAULT_READERS: usize = 8;
const BUCKET: Duration = Duration::from_millis(50);

const HELP: &str = "\
Redis Cluster benchmarks (BENCHMARKS.md, \"Redis Cluster (issue 10)\").

USAGE: cluster [--quick] [--only 1,2,3] [--runs N]

  --quick     a smoke run: short slices, 1,000 and 10,000 entries, one
              failover of each kind
  --only L    only these figures (1: get hit vs raw GET; 2: tag
              invalidation and sweep; 3: caching through failovers)
  --runs N    failovers of each kind in figure 3 (default 3; --quick: 1)
  --help      this text

Needs redis-server and redis-cli (Debian package redis-server).";

struct Opts {
    quick: bool,
    only: Option<Vec<u32>>,
    fault_runs: usize,
}

impl Opts {
    fn parse() -> anyhow::Result<Opts> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut opts = Opts {
            quick: false,
            only: None,
            fault_runs: 0,
        };
        let mut runs = None;
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--help" | "-h" => {
                    println!("{HELP}");
                    std::process::exit(0);
                }
                "--quick" => opts.quick = true,
                "--only" => {
                    let list = args
                        .get(i + 1)
                        .ok_or_else(|| anyhow::anyhow!("--only needs a list, e.g. --only 1,3"))?;
                    let figures = list
                        .split(',')
                        .map(|n| match n.trim().parse::<u32>() {
                            Ok(f @ 1..=3) => Ok(f),
                            _ => Err(anyhow::anyhow!("--only: {n:?} is not a figure (1, 2 or 3)")),
                        })
                        .collect::<anyhow::Result<Vec<u32>>>()?;
                    opts.only = Some(figures);
                    i += 1;
                }
                "--runs" => {
                    let n = args
                        .get(i + 1)
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| anyhow::anyhow!("--runs needs a positive number"))?;
                    runs = Some(n);
                    i += 1;
                }
                other => anyhow::bail!("unknown argument {other:?} (see --help)"),
            }
            i += 1;
        }
        opts.fault_runs = runs.unwrap_or(if opts.quick { 1 } else { 3 });
        Ok(opts)
    }

    fn wants(&self, figure: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&figure))
    }
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse().unwrap_or_else(|e| {
        eprintln!("cluster: {e}");
        std::process::exit(2)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tables = Vec::new();
    if opts.wants(1) || opts.wants(2) {
        let cluster = tokio::task::block_in_place(RedisCluster::start);
        let server = RedisServer::start();
        log(format!(
            "3+3 cluster on {}; standalone redis-server on port {} ({}); {} cores",
            cluster.nodes_env(),
            server.port(),
            server
                .cli(&["INFO", "server"])
                .lines()
                .find(|l| l.starts_with("redis_version"))
                .unwrap_or("?")
                .trim(),
            thread::available_parallelism().map_or(0, |n| n.get())
        ));
        if opts.wants(1) {
            tables.push(figure_1(&cluster, &server, &opts).await?);
        }
        if opts.wants(2) {
            tables.push(figure_2(&cluster, &server, &opts).await?);
        }
    }
    if opts.wants(3) {
        tables.push(figure_3(&opts).await?);
    }
    for table in tables {
        println!();
        println!("{table}");
    }
    log(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[cluster] {}", msg.as_ref());
}

// ---------------------------------------------------------------- helpers

fn node_urls(cluster: &RedisCluster) -> Vec<String> {
    cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://{n}"))
        .collect()
}

/// The library's defaults on the cluster, without the in-process L1 tier:
/// every figure here is about what goes through Redis.
fn cluster_config(cluster: &RedisCluster) -> CacheConfig {
    CacheConfig {
        l1_max_bytes: 0,
        ..CacheConfig::redis_cluster(node_urls(cluster))
    }
}

fn standalone_config(server: &RedisServer) -> CacheConfig {
    CacheConfig {
        l1_max_bytes: 0,
        ..CacheConfig::redis(server.url())
    }
}

/// A raw cluster connection built exactly as the store builds its own.
async fn raw_cluster(cluster: &RedisCluster) -> anyhow::Result<ClusterConnection> {
    let defaults = CacheConfig::default();
    Ok(spywatcher_cache::redis_cluster_connection(
        &node_urls(cluster),
        defaults.connect_timeout,
        defaults.op_timeout,
    )
    .await?)
}

/// A raw standalone connection set up exactly as the store's own.
async fn raw_standalone(server: &RedisServer) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(server.url())?;
    let config = spywatcher_cache::redis_connection_config(CacheConfig::default().connect_timeout);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// The slot of a key, as Redis Cluster computes it (CRC16 of the hash tag).
fn slot(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let len = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &bytes[open + 1..open + 1 + len])
    });
    u32::from(crc16::State::<crc16::XMODEM>::calculate(
        tagged.unwrap_or(bytes),
    )) % 16_384
}

/// Masters (address, slot ranges) as the cluster sees them now.
fn masters(cluster: &RedisCluster) -> Vec<(String, Vec<(u32, u32)>)> {
    let mut masters: Vec<_> = cluster
        .topology()
        .into_iter()
        .filter(|n| n.is_master() && !n.is_failed() && !n.slots.is_empty())
        .map(|n| (n.addr, n.slots))
        .collect();
    masters.sort();
    masters
}

fn master_index(masters: &[(String, Vec<(u32, u32)>)], key: &str) -> usize {
    let s = slot(key);
    masters
        .iter()
        .position(|(_, slots)| slots.iter().any(|&(a, b)| a <= s && s <= b))
        .expect("every slot served")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn fmt_us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

// ----------------------------------------------- figure 1: get vs raw GET

/// One side of figure 1: what one read is.
#[derive(Clone)]
enum Reader {
    Cache(Cache, Arc<Vec<String>>),
    ClusterGet(ClusterConnection, Arc<Vec<String>>),
    /// The keys a cached read asks the cluster for: the entry and its two
    /// tags' markers, in one `MGET` that the client splits per slot.
    ClusterMget(ClusterConnection, Arc<Vec<[String; 3]>>),
    StandaloneGet(MultiplexedConnection, Arc<Vec<String>>),
    /// For scale, around the cluster client: `GET` straight to the master
    /// serving the key, on a connection of the standalone store's set-up.
    DirectGet(Vec<MultiplexedConnection>, Arc<Vec<(usize, String)>>),
    /// The same for the keys of a cached read: per master, one pipeline of
    /// `GET`s, all at once (the entry's master first).
    DirectSplit(Vec<MultiplexedConnection>, Arc<Vec<PerMaster>>),
}

/// Keys grouped by the index of the master serving them.
type PerMaster = Vec<(usize, Vec<String>)>;

impl Reader {
    /// One read of the `i`th key; whether it found a value.
    async fn read(&mut self, i: usize) -> bool {
        match self {
            Reader::Cache(cache, keys) => cache.get_json(&keys[i % HOT_KEYS]).await.is_some(),
            Reader::ClusterGet(conn, keys) => {
                let v: Option<Vec<u8>> = conn.get(&keys[i % HOT_KEYS]).await.unwrap_or(None);
                v.is_some()
            }
            Reader::ClusterMget(conn, keys) => {
                let v: Vec<Option<Vec<u8>>> =
                    conn.mget(&keys[i % HOT_KEYS][..]).await.unwrap_or_default();
                v.first().is_some_and(Option::is_some)
            }
            Reader::StandaloneGet(conn, keys) => {
                let v: Option<Vec<u8>> = conn.get(&keys[i % HOT_KEYS]).await.unwrap_or(None);
                v.is_some()
            }
            Reader::DirectGet(conns, keys) => {
                let (m, key) = &keys[i % HOT_KEYS];
                let v: Option<Vec<u8>> = conns[*m].get(key).await.unwrap_or(None);
                v.is_some()
            }
            Reader::DirectSplit(conns, reads) => {
                let groups = reads[i % HOT_KEYS].iter().map(|(m, keys)| {
                    let mut conn = conns[*m].clone();
                    async move {
                        let mut pipe = redis::pipe();
                        for key in keys {
                            pipe.get(key);
                        }
                        let values: Vec<Option<Vec<u8>>> =
                            pipe.query_async(&mut conn).await.unwrap_or_default();
                        values
                    }
                });
                let values = futures::future::join_all(groups).await;
                values
                    .first()
                    .and_then(|entry_master| entry_master.first())
                    .is_some_and(Option::is_some)
            }
        }
    }
}

struct Side {
    name: &'static str,
    reader: Reader,
    latencies: Vec<Duration>,
    rates: Vec<f64>,
    /// Reads that found nothing: a call that failed or timed out (the
    /// cache fails open: a miss), never a key that was not there.
    misses: Arc<AtomicU64>,
}

impl Side {
    fn new(name: &'static str, reader: Reader) -> Side {
        Side {
            name,
            reader,
            latencies: Vec::new(),
            rates: Vec::new(),
            misses: Arc::new(AtomicU64::new(0)),
        }
    }
}

async fn figure_1(
    cluster: &RedisCluster,
    server: &RedisServer,
    opts: &Opts,
) -> anyhow::Result<String> {
    log("figure 1: get hit (no L1) vs raw GET, 1 KiB values, 1,000 keys");
    let value = value_1k();
    let json = serde_json::to_vec(&value)?;
    let keys: Arc<Vec<String>> = Arc::new(
        (0..HOT_KEYS)
            .map(|i| format!("analytics:ghosts:1:{i}"))
            .collect(),
    );
    let raw_keys: Arc<Vec<String>> = Arc::new((0..HOT_KEYS).map(|i| format!("raw:{i}")).collect());

    let cluster_cache = Cache::new(cluster_config(cluster))?;
    let standalone_cache = Cache::new(standalone_config(server))?;
    let cluster_raw = raw_cluster(cluster).await?;
    let standalone_raw = raw_standalone(server).await?;
    for cache in [&cluster_cache, &standalone_cache] {
        let entries = keys.iter().map(|k| {
            (
                k.clone(),
                value.clone(),
                SetOptions::ttl(LONG_TTL).tags(HOT_TAGS),
            )
        });
        anyhow::ensure!(cache.warm(entries).await == HOT_KEYS as u64, "warm failed");
    }
    for k in raw_keys.iter() {
        let _: () = cluster_raw.clone().set(k, &json[..]).await?;
    }
    let mut pipe = redis::pipe();
    for k in raw_keys.iter() {
        pipe.set(k, &json[..]).ignore();
    }
    pipe.exec_async(&mut standalone_raw.clone()).await?;

    // Where the keys live: each read needs its entry and its two tags'
    // markers, which the cluster client fetches per slot, from each master
    // that serves one.
    let masters = masters(cluster);
    let marker = |tag: &str| format!("spywatcher:~t:{{{tag}}}");
    let marker_masters: Vec<usize> = HOT_TAGS
        .iter()
        .map(|t| master_index(&masters, &marker(t)))
        .collect();
    let mut per_master = vec![0usize; masters.len()];
    let mut spans = [0usize; 4];
    for k in keys.iter() {
        let m = master_index(&masters, &format!("spywatcher:{k}"));
        per_master[m] += 1;
        let mut touched = vec![m];
        touched.extend(&marker_masters);
        touched.sort_unstable();
        touched.dedup();
        spans[touched.len()] += 1;
    }
    let raw_per_master = raw_keys
        .iter()
        .fold(vec![0usize; masters.len()], |mut n, k| {
            n[master_index(&masters, k)] += 1;
            n
        });
    let layout = format!(
        "entries per master {:?} (raw keys {:?}); the markers of `{}` and `{}` on masters {} and {}; \
         reads needing 1 / 2 / 3 masters: {} / {} / {}",
        per_master,
        raw_per_master,
        HOT_TAGS[0],
        HOT_TAGS[1],
        marker_masters[0],
        marker_masters[1],
        spans[1],
        spans[2],
        spans[3]
    );
    log(format!("  {layout}"));
    let mget_keys: Arc<Vec<[String; 3]>> = Arc::new(
        keys.iter()
            .map(|k| {
                [
                    format!("spywatcher:{k}"),
                    marker(HOT_TAGS[0]),
                    marker(HOT_TAGS[1]),
                ]
            })
            .collect(),
    );

    let mut direct = Vec::new();
    for (addr, _) in &masters {
        let client = redis::Client::open(format!("redis://{addr}"))?;
        let config =
            spywatcher_cache::redis_connection_config(CacheConfig::default().connect_timeout);
        direct.push(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await?,
        );
    }
    let direct_keys: Arc<Vec<(usize, String)>> = Arc::new(
        raw_keys
            .iter()
            .map(|k| (master_index(&masters, k), k.clone()))
            .collect(),
    );
    let direct_reads: Arc<Vec<PerMaster>> = Arc::new(
        mget_keys
            .iter()
            .map(|keys| {
                let mut groups: PerMaster = Vec::new();
                for key in keys {
                    let m = master_index(&masters, key);
                    match groups.iter_mut().find(|(g, _)| *g == m) {
                        Some((_, group)) => group.push(key.clone()),
                        None => groups.push((m, vec![key.clone()])),
                    }
                }
                groups
            })
            .collect(),
    );

    let mut sides = vec![
        Side::new(
            "cluster cache",
            Reader::Cache(cluster_cache.clone(), keys.clone()),
        ),
        Side::new(
            "cluster raw GET",
            Reader::ClusterGet(cluster_raw.clone(), raw_keys.clone()),
        ),
        Side::new(
            "cluster raw MGET (entry + 2 markers)",
            Reader::ClusterMget(cluster_raw, mget_keys),
        ),
        Side::new(
            "standalone cache",
            Reader::Cache(standalone_cache.clone(), keys.clone()),
        ),
        Side::new(
            "standalone raw GET",
            Reader::StandaloneGet(standalone_raw, raw_keys.clone()),
        ),
        Side::new(
            "cluster, no client: GET to the master",
            Reader::DirectGet(direct.clone(), direct_keys),
        ),
        Side::new(
            "cluster, no client: a read's keys",
            Reader::DirectSplit(direct, direct_reads),
        ),
    ];
    // One caller: rounds of reads in a row, each side in turn, the order
    // rotating round by round; every read's time kept.
    let rounds = if opts.quick { 3 } else { 12 };
    let per_round = if opts.quick { 500 } else { 2_000 };
    for round in 0..=rounds {
        for s in 0..sides.len() {
            let count = sides.len();
            let side = &mut sides[(s + round) % count];
            let n = if round == 0 { per_round / 4 } else { per_round };
            for i in 0..n {
                let begun = Instant::now();
                if !side.reader.read(i * 7 + round).await {
                    side.misses.fetch_add(1, Ordering::Relaxed);
                }
                if round > 0 {
                    side.latencies.push(begun.elapsed());
                }
            }
        }
    }
    // 50 callers: short slices, each side in turn, the order rotating.
    let slices = if opts.quick { 4 } else { 24 };
    let slice = Duration::from_millis(if opts.quick { 300 } else { 500 });
    for round in 0..=slices {
        let length = if round == 0 { slice / 2 } else { slice };
        for s in 0..sides.len() {
            let count = sides.len();
            let side = &mut sides[(s + round) % count];
            let state = (side.reader.clone(), side.misses.clone());
            let rate = throughput!(CALLERS, length, state, |(mut reader, misses), i| {
                if !reader.read(i).await {
                    misses.fetch_add(1, Ordering::Relaxed);
                }
            });
            if round > 0 {
                side.rates.push(rate);
            }
        }
    }
    for side in &mut sides {
        side.latencies.sort_unstable();
        log(format!(
            "  {:<38} 1 caller p50 {} p99 {}; {} misses; {CALLERS} callers mean {} (slices {})",
            side.name,
            fmt_us(percentile(&side.latencies, 0.5)),
            fmt_us(percentile(&side.latencies, 0.99)),
            side.misses.load(Ordering::Relaxed),
            fmt_rate(side.rates.iter().sum::<f64>() / side.rates.len() as f64),
            side.rates
                .iter()
                .map(|r| format!("{:.0}", r / 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    for (name, cache) in [
        ("cluster", &cluster_cache),
        ("standalone", &standalone_cache),
    ] {
        let stats = cache.stats().await;
        log(format!(
            "  {name} cache: {} hits, {} misses, {} errors, {} skipped (breaker {})",
            stats.hits, stats.misses, stats.errors, stats.skipped, stats.circuit
        ));
    }
    let mean = |s: &Side| s.rates.iter().sum::<f64>() / s.rates.len() as f64;
    // Per-slice ratios: the two sides of one slice ran within a second of
    // each other; their median resists the machine's load changing.
    let ratio = |a: &Side, b: &Side| {
        let ratios: Vec<f64> = a.rates.iter().zip(&b.rates).map(|(x, y)| x / y).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        (median(ratios), lo, hi)
    };
    let p = |s: &Side, q: f64| percentile(&s.latencies, q);
    let [cc, cr, cm, sc, sr, dg, ds] = &sides[..] else {
        unreachable!()
    };
    let (c_ratio, c_lo, c_hi) = ratio(cc, cr);
    let (s_ratio, s_lo, s_hi) = ratio(sc, sr);
    let (m_ratio, _, _) = ratio(cm, cr);
    let (cm_ratio, _, _) = ratio(cc, cm);
    let lat_ratio = |a: &Side, b: &Side| p(a, 0.5).as_secs_f64() / p(b, 0.5).as_secs_f64();
    let mut t = String::new();
    t.push_str(&format!(
        "Figure 1. {layout}. One caller: {rounds} rounds of {per_round} reads per side; \
         {CALLERS} callers: {slices} slices of {:.1} s per side; sides in rotating order.\n\n",
        slice.as_secs_f64()
    ));
    t.push_str("| `get` hit, no L1, 1 KiB | target | Redis Cluster (3+3) | standalone Redis |\n");
    t.push_str("| --- | --- | ---: | ---: |\n");
    t.push_str(&format!(
        "| 1 caller, cache `get_json`: p50 / p99 | | {} / {} | {} / {} |\n",
        fmt_us(p(cc, 0.5)),
        fmt_us(p(cc, 0.99)),
        fmt_us(p(sc, 0.5)),
        fmt_us(p(sc, 0.99))
    ));
    t.push_str(&format!(
        "| 1 caller, raw `GET`: p50 / p99 | | {} / {} | {} / {} |\n",
        fmt_us(p(cr, 0.5)),
        fmt_us(p(cr, 0.99)),
        fmt_us(p(sr, 0.5)),
        fmt_us(p(sr, 0.99))
    ));
    t.push_str(&format!(
        "| 1 caller, p50 cache / raw | | {:.2}× | {:.2}× |\n",
        lat_ratio(cc, cr),
        lat_ratio(sc, sr)
    ));
    t.push_str(&format!(
        "| {CALLERS} callers, cache `get_json` (mean of slices) | | {} | {} |\n",
        fmt_rate(mean(cc)),
        fmt_rate(mean(sc))
    ));
    t.push_str(&format!(
        "| {CALLERS} callers, raw `GET` | | {} | {} |\n",
        fmt_rate(mean(cr)),
        fmt_rate(mean(sr))
    ));
    t.push_str(&format!(
        "| {CALLERS} callers, **cache / raw** (median of per-slice ratios, range) | ≥ 0.6 | **{c_ratio:.2}** ({c_lo:.2}–{c_hi:.2}) | **{s_ratio:.2}** ({s_lo:.2}–{s_hi:.2}) |\n"
    ));
    t.push_str(&format!(
        "| {CALLERS} callers, raw `MGET` of the entry and its 2 markers (what a cluster read sent through the cluster client before `read.rs`) | | {}: {m_ratio:.2} of raw `GET`; cache / it {cm_ratio:.2} | |\n",
        fmt_rate(mean(cm)),
    ));
    let missed = |s: &Side| s.misses.load(Ordering::Relaxed);
    t.push_str(&format!(
        "| reads that found nothing (a failed or timed-out call), cache / raw `GET` | 0 | {} / {} | {} / {} |\n",
        missed(cc),
        missed(cr),
        missed(sc),
        missed(sr)
    ));
    let (dg_ratio, _, _) = ratio(dg, cr);
    let (ds_ratio, _, _) = ratio(ds, cr);
    t.push_str(&format!(
        "| {CALLERS} callers, without the cluster client: raw `GET` straight to the key's master (a connection per master) | | {}: {dg_ratio:.2} of raw `GET`; 1 caller p50 {} | |\n",
        fmt_rate(mean(dg)),
        fmt_us(p(dg, 0.5))
    ));
    t.push_str(&format!(
        "| {CALLERS} callers, without the cluster client: the entry and its 2 markers straight to their masters (one pipeline per master, at once) | | {}: {ds_ratio:.2} of raw `GET`; 1 caller p50 {} | |\n",
        fmt_rate(mean(ds)),
        fmt_us(p(ds, 0.5))
    ));
    Ok(t)
}

// ------------------------------------------- figure 2: tag invalidation

/// Connections to each master (or the one standalone server), for memory
/// figures and flushing.
struct Admin {
    conns: Vec<MultiplexedConnection>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    keys: u64,
    used: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} keys / {:.1} MiB",
            self.keys,
            self.used as f64 / 1_048_576.0
        )
    }
}

impl Admin {
    async fn connect(addresses: &[String]) -> anyhow::Result<Admin> {
        let mut conns = Vec::new();
        for addr in addresses {
            let client = redis::Client::open(format!("redis://{addr}"))?;
            conns.push(client.get_multiplexed_async_connection().await?);
        }
        Ok(Admin { conns })
    }

    /// Keys and `used_memory`, summed over the masters.
    async fn memory(&mut self) -> anyhow::Result<Memory> {
        let mut sum = Memory::default();
        for conn in &mut self.conns {
            let keys: u64 = redis::cmd("DBSIZE").query_async(conn).await?;
            let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
            sum.keys += keys;
            sum.used += info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(sum)
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        for conn in &mut self.conns {
            let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
        }
        Ok(())
    }
}

/// `n` entries of 1 KiB under `tag` and one of 100 `guild:…` tags, TTL 1 h,
/// written with `warm`; returns how long that took.
async fn populate(cache: &Cache, tag: &str, prefix: &str, n: usize) -> anyhow::Result<Duration> {
    let value = value_1k();
    let begun = Instant::now();
    let mut start = 0;
    while start < n {
        let end = (start + 5_000).min(n);
        let entries = (start..end).map(|i| {
            let options =
                SetOptions::ttl(LONG_TTL).tags([tag.to_string(), format!("guild:{}", i % 100)]);
            (format!("{prefix}:{i}"), value.clone(), options)
        });
        let stored = cache.warm(entries).await;
        anyhow::ensure!(
            stored == (end - start) as u64,
            "warm stored {stored} of {}",
            end - start
        );
        start = end;
    }
    Ok(begun.elapsed())
}

/// What one store gave in figure 2.
struct Invalidations {
    /// Per size: every run's time, and the writing rate of `warm`.
    times: Vec<(usize, Vec<Duration>, f64)>,
    /// Of the last run of the largest size: memory empty / written / right
    /// after the invalidation / after the sweep, and the sweep's duration.
    sweep: Option<([Memory; 4], Option<Duration>)>,
}

async fn invalidations(
    cache: &Cache,
    admin: &mut Admin,
    sweep_pending: impl AsyncFn() -> anyhow::Result<bool>,
    sizes: &[usize],
    runs: usize,
) -> anyhow::Result<Invalidations> {
    // Loads the invalidation script: the first size must not time it.
    cache.invalidate_by_tag("bench:warm-up").await;
    let mut result = Invalidations {
        times: Vec::new(),
        sweep: None,
    };
    for (s, &n) in sizes.iter().enumerate() {
        let mut times = Vec::new();
        let mut rates = Vec::new();
        for run in 0..runs {
            admin.flush().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let base = admin.memory().await?;
            let tag = format!("bench:{n}:{run}");
            let wrote = populate(cache, &tag, &format!("e{n}r{run}"), n).await?;
            rates.push(n as f64 / wrote.as_secs_f64());
            let before = admin.memory().await?;
            let begun = Instant::now();
            let count = cache.invalidate_by_tag(&tag).await;
            let took = begun.elapsed();
            anyhow::ensure!(count == n as u64, "invalidated {count} of {n}");
            times.push(took);
            let last = s + 1 == sizes.len() && run + 1 == runs;
            if last {
                // The background sweeper reclaims the entries' memory.
                let right_after = admin.memory().await?;
                let mut swept = None;
                while begun.elapsed() < Duration::from_secs(600) {
                    if !sweep_pending().await? {
                        swept = Some(begun.elapsed());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let after = admin.memory().await?;
                result.sweep = Some(([base, before, right_after, after], swept));
            }
        }
        log(format!(
            "  {n} entries: invalidate_by_tag {} (median of {runs}); warm {} entries/s",
            times
                .iter()
                .map(|t| fmt_dur(*t))
                .collect::<Vec<_>>()
                .join(", "),
            median(rates.clone()) as u64
        ));
        result.times.push((n, times, median(rates)));
    }
    admin.flush().await?;
    Ok(result)
}

async fn figure_2(
    cluster: &RedisCluster,
    server: &RedisServer,
    opts: &Opts,
) -> anyhow::Result<String> {
    let sizes: Vec<usize> = if opts.quick {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 10_000, 100_000]
    };
    let runs = if opts.quick { 2 } else { 5 };
    let sweep_list = "spywatcher:~sweep";

    log("figure 2: invalidate_by_tag on the cluster");
    let cache = Cache::new(cluster_config(cluster))?;
    let mut admin = Admin::connect(
        &masters(cluster)
            .into_iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
    )
    .await?;
    let raw = raw_cluster(cluster).await?;
    let on_cluster = invalidations(
        &cache,
        &mut admin,
        async || Ok(raw.clone().exists::<_, bool>(sweep_list).await?),
        &sizes,
        runs,
    )
    .await?;
    drop(cache);

    log("figure 2: invalidate_by_tag on the standalone server");
    let cache = Cache::new(standalone_config(server))?;
    let mut admin = Admin::connect(&[format!("127.0.0.1:{}", server.port())]).await?;
    let raw = raw_standalone(server).await?;
    let standalone = invalidations(
        &cache,
        &mut admin,
        async || Ok(raw.clone().exists::<_, bool>(sweep_list).await?),
        &sizes,
        runs,
    )
    .await?;
    drop(cache);

    let mut t = String::new();
    t.push_str(&format!(
        "Figure 2. Entries of 1 KiB under the tag and one of 100 `guild:…` tags, TTL 1 h, \
         written with `warm`; `invalidate_by_tag` timed, {runs} runs per size (all emptied \
         between runs), median; the sweeper measured after the last run of the largest size.\n\n"
    ));
    t.push_str("| entries under the tag | target | Redis Cluster: median (runs) | standalone: median (runs) | `warm` entries/s, cluster / standalone |\n");
    t.push_str("| ---: | --- | --- | --- | ---: |\n");
    for ((n, c, c_rate), (_, s, s_rate)) in on_cluster.times.iter().zip(&standalone.times) {
        let show = |v: &[Duration]| {
            format!(
                "**{}** ({})",
                fmt_dur(Duration::from_secs_f64(median(
                    v.iter().map(Duration::as_secs_f64).collect()
                ))),
                v.iter().map(|d| fmt_dur(*d)).collect::<Vec<_>>().join(", ")
            )
        };
        t.push_str(&format!(
            "| {n} | flat | {} | {} | {:.0} / {:.0} |\n",
            show(c),
            show(s),
            c_rate,
            s_rate
        ));
    }
    let n = sizes.last().copied().unwrap_or(0);
    let sweep = |s: &Option<([Memory; 4], Option<Duration>)>| match s {
        Some(([base, before, right_after, after], swept)) => (
            swept.map_or("not done in 600 s".into(), |d| {
                format!("**{}**", fmt_dur(d))
            }),
            format!("{base} / {before} / {right_after} / **{after}**"),
        ),
        None => ("-".into(), "-".into()),
    };
    let (c_took, c_mem) = sweep(&on_cluster.sweep);
    let (s_took, s_mem) = sweep(&standalone.sweep);
    t.push_str(&format!(
        "| {n}: background sweep, from the invalidation's return to nothing left to sweep | | {c_took} | {s_took} | |\n"
    ));
    t.push_str(&format!(
        "| {n}: keys / `used_memory` (masters, summed): empty / written / right after / swept | | {c_mem} | {s_mem} | |\n"
    ));
    Ok(t)
}

// ------------------------------------------- figure 3: through a failover

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// SIGKILL of a master, its replica promoted by the cluster.
    Kill,
    /// `CLUSTER FAILOVER` on a replica.
    Manual,
}

/// One read of figure 3.
#[derive(Clone, Copy)]
struct Read {
    /// Since the readers started.
    at: Duration,
    took: Duration,
    key: u16,
    origin: Origin,
}

/// What one failover run gave.
struct FaultRun {
    fault: Fault,
    master: String,
    keys_on_master: usize,
    /// From the call to the testkit's helper to its return (the new master
    /// serving the slots, every live node `cluster_state:ok`).
    failover: Duration,
    /// Times from the fault.
    first_miss: Option<Duration>,
    last_load: Option<Duration>,
    all_cached: Option<Duration>,
    longest_no_hit: Duration,
    keys_lost: usize,
    reads: usize,
    loads: usize,
    slowest: Duration,
    p99: Duration,
    strip: String,
}

async fn fault_run(fault: Fault) -> anyhow::Result<FaultRun> {
    let mut cluster = tokio::task::block_in_place(RedisCluster::start);
    let cache = Cache::new(cluster_config(&cluster))?;
    let topology = masters(&cluster);
    // The master to lose: the one every PUBLISH of the cache goes to.
    let master = cluster.master_of("spywatcher:pubsub:");
    let m = topology
        .iter()
        .position(|(a, _)| *a == master)
        .expect("a master");
    let keys: Arc<Vec<(String, String)>> = Arc::new(
        (0..FAULT_KEYS)
            .map(|i| (format!("report:{i}"), format!("guild:{}", i % FAULT_TAGS)))
            .collect(),
    );
    let keys_on_master = keys
        .iter()
        .filter(|(k, _)| master_index(&topology, &format!("spywatcher:{k}")) == m)
        .count();

    let stop = Arc::new(AtomicBool::new(false));
    let last_load = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let value = Arc::new(value_1k());
    let readers: Vec<_> = (0..FAULT_READERS)
        .map(|r| {
            let (cache, keys, stop, last_load, value) = (
                cache.clone(),
                keys.clone(),
                stop.clone(),
                last_load.clone(),
                value.clone(),
            );
            tokio::spawn(async move {
                let mut reads = Vec::with_capacity(200_000);
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % FAULT_KEYS;
                    let (key, tag) = &keys[k];
                    let begun = Instant::now();
                    let loaded = cache
                        .remember_json(key, LONG_TTL, &[tag], || async {
                            Ok::<_, std::convert::Infallible>(value.as_ref().clone())
                        })
                        .await;
                    let Ok((_, origin)) = loaded;
                    let at = begun - epoch;
                    if origin != Origin::Cache {
                        last_load.fetch_max(at.as_micros() as u64, Ordering::Relaxed);
                    }
                    reads.push(Read {
                        at,
                        took: begun.elapsed(),
                        key: k as u16,
                        origin,
                    });
                    i += FAULT_READERS * 7 + 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                reads
            })
        })
        .collect();
    // Every key cached, then steady reads for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let at = epoch.elapsed();
    let lost = master.clone();
    let (cluster, failover) = tokio::task::spawn_blocking(move || {
        let begun = Instant::now();
        match fault {
            Fault::Kill => {
                cluster.fail_over(&lost);
            }
            Fault::Manual => {
                let replica = cluster.replicas_of(&lost)[0].clone();
                cluster.manual_failover(&replica);
            }
        }
        (cluster, begun.elapsed())
    })
    .await?;
    // Reads go on until no loader has run for 3 s (at most 30 s).
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let since = epoch.elapsed();
        let last = Duration::from_micros(last_load.load(Ordering::Relaxed));
        if since.saturating_sub(last.max(at)) > Duration::from_secs(3)
            || since - at > Duration::from_secs(30)
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await?);
    }
    drop(cache);
    drop(cluster);
    reads.sort_by_key(|r| r.at);
    Ok(analyse(fault, master, keys_on_master, failover, at, &reads))
}

fn analyse(
    fault: Fault,
    master: String,
    keys_on_master: usize,
    failover: Duration,
    at: Duration,
    reads: &[Read],
) -> FaultRun {
    let after: Vec<&Read> = reads.iter().filter(|r| r.at >= at).collect();
    let since = |r: &Read| r.at - at;
    let loads: Vec<&&Read> = after.iter().filter(|r| r.origin != Origin::Cache).collect();
    let first_miss = loads.first().map(|r| since(r));
    let last_load = loads.last().map(|r| since(r));
    // Per key: its last load after the fault, then the first hit after it.
    let mut last_per_key: Vec<Option<Duration>> = vec![None; FAULT_KEYS];
    for r in &loads {
        last_per_key[usize::from(r.key)] = Some(r.at);
    }
    let keys_lost = last_per_key.iter().filter(|l| l.is_some()).count();
    let mut all_cached = Some(Duration::ZERO);
    for (k, last) in last_per_key.iter().enumerate() {
        let Some(last) = last else { continue };
        let hit = after
            .iter()
            .find(|r| usize::from(r.key) == k && r.at > *last && r.origin == Origin::Cache);
        all_cached = match (all_cached, hit) {
            (Some(t), Some(hit)) => Some(t.max(since(hit))),
            _ => None,
        };
    }
    // 50 ms buckets from 0.5 s before the fault to the end.
    let start = at.saturating_sub(Duration::from_millis(500));
    let end = reads.last().map_or(at, |r| r.at);
    let n = ((end - start).as_nanos() / BUCKET.as_nanos()) as usize + 1;
    let mut buckets = vec![(0usize, 0usize); n];
    for r in reads.iter().filter(|r| r.at >= start) {
        let b = ((r.at - start).as_nanos() / BUCKET.as_nanos()) as usize;
        if r.origin == Origin::Cache {
            buckets[b].0 += 1;
        } else {
            buckets[b].1 += 1;
        }
    }
    let fault_bucket = ((at - start).as_nanos() / BUCKET.as_nanos()) as usize;
    let mut longest = 0;
    let mut current = 0;
    for &(hits, _) in &buckets[fault_bucket..] {
        current = if hits == 0 { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    // The strip: `hits/loads` per bucket, with runs of buckets that had no
    // load, or no hit, folded into one line each.
    let mut strip = String::new();
    let mut i = 0;
    while i < buckets.len() {
        let offset = (start + BUCKET * i as u32).as_secs_f64() - at.as_secs_f64();
        let fold = |pred: &dyn Fn(&(usize, usize)) -> bool| {
            let mut j = i;
            while j < buckets.len() && pred(&buckets[j]) {
                j += 1;
            }
            j
        };
        let no_load = fold(&|b| b.1 == 0);
        let no_hit = fold(&|b| b.0 == 0);
        let j = if no_load - i > 1 {
            no_load
        } else if no_hit - i > 1 {
            no_hit
        } else {
            i + 1
        };
        let hits: usize = buckets[i..j].iter().map(|b| b.0).sum();
        let loads: usize = buckets[i..j].iter().map(|b| b.1).sum();
        if j - i > 1 {
            strip.push_str(&format!(
                "{offset:+.2} s: {} buckets, {hits} hits / {loads} loader runs\n",
                j - i
            ));
        } else {
            strip.push_str(&format!("{offset:+.2} s: {hits} / {loads}\n"));
        }
        i = j;
    }
    let mut took: Vec<Duration> = after.iter().map(|r| r.took).collect();
    took.sort_unstable();
    FaultRun {
        fault,
        master,
        keys_on_master,
        failover,
        first_miss,
        last_load,
        all_cached,
        longest_no_hit: BUCKET * longest as u32,
        keys_lost,
        reads: after.len(),
        loads: loads.len(),
        slowest: took.last().copied().unwrap_or_default(),
        p99: percentile(&took, 0.99),
        strip,
    }
}

async fn figure_3(opts: &Opts) -> anyhow::Result<String> {
    let mut runs = Vec::new();
    for run in 0..opts.fault_runs {
        for fault in [Fault::Kill, Fault::Manual] {
            log(format!("figure 3: {fault:?}, run {}", run + 1));
            let r = fault_run(fault).await?;
            let opt = |d: Option<Duration>| d.map_or("-".to_string(), fmt_ms);
            log(format!(
                "  {} ({} of {FAULT_KEYS} keys): failover {}; first read without caching {}, \
                 last load {}, every key cached again {}; longest stretch without a hit {}; \
                 {} keys lost caching; {} reads, {} loads after the fault; read p99 {} max {}",
                r.master,
                r.keys_on_master,
                fmt_ms(r.failover),
                opt(r.first_miss),
                opt(r.last_load),
                opt(r.all_cached),
                fmt_ms(r.longest_no_hit),
                r.keys_lost,
                r.reads,
                r.loads,
                fmt_ms(r.p99),
                fmt_ms(r.slowest)
            ));
            for line in r.strip.lines() {
                log(format!("    {line}"));
            }
            runs.push(r);
        }
    }
    let opt = |d: Option<Duration>| d.map_or("-".to_string(), fmt_ms);
    let mut t = String::new();
    t.push_str(&format!(
        "Figure 3. {FAULT_READERS} readers, `remember_json` over {FAULT_KEYS} keys ({FAULT_TAGS} tags), \
         1 ms pause between reads, no L1, the library's defaults (op timeout 250 ms, breaker \
         cool-down 1 s, journal interval 1 s); fault 3 s after start, on the master every PUBLISH \
         goes to; times from the call of the fault helper.\n\n"
    ));
    t.push_str("| fault | failover done | first read not from cache | last loader run | every key cached again | longest run of 50 ms buckets without a hit | keys that lost caching (on the lost master) | reads / loader runs after the fault | read p99 / max after the fault |\n");
    t.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in &runs {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} / {} | {} / {} |\n",
            match r.fault {
                Fault::Kill => "master killed",
                Fault::Manual => "`CLUSTER FAILOVER`",
            },
            fmt_ms(r.failover),
            opt(r.first_miss),
            opt(r.last_load),
            if r.keys_lost == 0 {
                "never lost".to_string()
            } else {
                format!("**{}**", opt(r.all_cached))
            },
            fmt_ms(r.longest_no_hit),
            r.keys_lost,
            r.keys_on_master,
            r.reads,
            r.loads,
            fmt_ms(r.p99),
            fmt_ms(r.slowest)
        ));
    }
    Ok(t)
}
