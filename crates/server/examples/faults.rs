//! What a Redis fault costs under a busy server (issue 9): the scenarios of
//! the fault tests (`tests/api/faults.rs`, `tests/chaos.rs`) at 100 events/s,
//! measured. `scripts/bench-faults` builds and runs it in release mode.
//!
//! ```text
//! cargo run --release -p spywatcher --example faults -- [--rate N] [--postgres] [--only NAME,...]
//! ```
//!
//! Each scenario starts afresh: a private redis-server, a database (a SQLite
//! file, or a new PostgreSQL database on `SPYWATCHER_TEST_PG_URL` with
//! `--postgres`), two instances of the service on it with the test
//! settings (op timeout 100 ms, cool-down 200 ms, journal interval 200 ms),
//! and the traffic, from 2 s before the fault to 3 s after Redis answers:
//!
//! - events at `--rate` per second (messages, typing, presence over two
//!   guilds, through both instances, each in its own request);
//! - a role change every 250 ms, one at a time, through each instance in
//!   turn, and after its 201 the guild's `roles` computed afresh: the truth
//!   the reads of `roles` are judged by (no other event changes `roles`);
//! - four readers, two per instance, reading the six analytics of both
//!   guilds in a loop.
//!
//! Reported per scenario: how long after Redis answers again both breakers
//! are closed, and the first cache hit on each instance; the stale window
//! (how long after a role change's 201 a read of `roles` still served the
//! value before it, on the other instance and on the instance that ingested
//! it); read and event latencies (p50 / p99 / max) before the fault, during
//! it (until both breakers are closed again, at least 1 s) and after;
//! non-2xx responses.

#[allow(dead_code)]
#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, sleep};

use helpers::*;

const USAGE: &str = "\
Redis faults under traffic: recovery time, stale window, latencies.

usage: faults [--rate N] [--postgres] [--only NAME,...] [--help]

  --rate N      events per second during each scenario (default 100)
  --postgres    PostgreSQL on SPYWATCHER_TEST_PG_URL (default: a SQLite file)
  --only NAMES  scenarios among: kill, hang, snapshot, flushall, pubsub

Needs redis-server and redis-cli on PATH. Build it in release mode
(scripts/bench-faults does).";

const PROBE_EVERY: Duration = Duration::from_millis(250);
const STEADY: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);
const READERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Hang,
    OlderSnapshot,
    FlushAll,
    PubSubKill,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::Kill,
        Fault::Hang,
        Fault::OlderSnapshot,
        Fault::FlushAll,
        Fault::PubSubKill,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Hang => "hang",
            Fault::OlderSnapshot => "snapshot",
            Fault::FlushAll => "flushall",
            Fault::PubSubKill => "pubsub",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Fault::Kill => "killed 1 s, restarted empty",
            Fault::Hang => "hung 1.5 s (SIGSTOP)",
            Fault::OlderSnapshot => "restarted from a 1 s older snapshot",
            Fault::FlushAll => "FLUSHALL",
            Fault::PubSubKill => "CLIENT KILL TYPE pubsub",
        }
    }
}

struct Opts {
    rate: u32,
    db: Db,
    faults: Vec<Fault>,
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let mut opts = Opts {
            rate: 100,
            db: Db::Sqlite,
            faults: Fault::ALL.to_vec(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Err(String::new()),
                "--postgres" => opts.db = Db::Postgres,
                "--rate" => {
                    opts.rate = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--rate takes a positive number")?;
                }
                "--only" => {
                    let names = args.next().ok_or("--only takes scenario names")?;
                    opts.faults = names
                        .split(',')
                        .map(|name| {
                            Fault::ALL
                                .into_iter()
                                .find(|f| f.name() == name.trim())
                                .ok_or(format!("unknown scenario {name:?}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(opts)
    }
}

struct Read {
    instance: usize,
    started: Instant,
    latency: Duration,
    ok: bool,
    hit: bool,
    /// Of the body, for reads of the judged analytics.
    roles: Option<u64>,
}

struct Post {
    started: Instant,
    latency: Duration,
    ok: bool,
}

#[derive(Clone, Copy)]
struct Version {
    sent: Instant,
    acked: Instant,
    instance: Option<usize>,
    digest: u64,
}

fn digest(value: &Value) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(value).unwrap())
}

async fn fresh_roles(app: &TestApp, guild: &GuildId) -> u64 {
    let rows = app
        .store
        .analytics_now(AnalyticsKind::Roles, guild, None)
        .await
        .unwrap();
    digest(&rows.to_json())
}

async fn read_loop(
    app: Arc<TestApp>,
    instance: usize,
    guilds: Vec<GuildId>,
    first: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Read> {
    let mut reads = Vec::new();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let guild = i % guilds.len();
        let kind = AnalyticsKind::ALL[(i / guilds.len()) % AnalyticsKind::ALL.len()];
        i += 1;
        let path = format!("/api/analytics/{kind}?guildId={}", guilds[guild].as_str());
        let started = Instant::now();
        let response = app.request(reqwest::Method::GET, &path, Some(API)).send();
        let (ok, hit, body) = match response.await {
            Ok(r) if r.status().is_success() => {
                let hit = header(&r, "x-cache") == "hit";
                (true, hit, r.json::<Value>().await.ok())
            }
            _ => (false, false, None),
        };
        let judged = guild == 0 && kind == AnalyticsKind::Roles;
        reads.push(Read {
            instance,
            started,
            latency: started.elapsed(),
            ok: ok && body.is_some(),
            hit,
            roles: body.filter(|_| judged).map(|b| digest(&b)),
        });
    }
    reads
}

/// Events that do not change `roles`, at `rate`, each in its own request.
async fn event_stream(
    apps: Vec<Arc<TestApp>>,
    guilds: Vec<GuildId>,
    rate: u32,
    stop: Arc<AtomicBool>,
) -> (Vec<Post>, Duration) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut posts = JoinSet::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let kind = [EventKind::Message, EventKind::Typing, EventKind::Presence][n % 3];
        let body = event(kind, &guilds[(n / 3) % 2], &(4_000 + n % 40).to_string());
        let app = apps[(n / 6) % apps.len()].clone();
        posts.spawn(async move {
            let started = Instant::now();
            let path = format!("/api/events/{}", kind.as_str());
            let response = app
                .request(reqwest::Method::POST, &path, Some(INGEST))
                .json(&body)
                .send()
                .await;
            Post {
                started,
                latency: started.elapsed(),
                ok: response.is_ok_and(|r| r.status().as_u16() == 201),
            }
        });
        n += 1;
    }
    let elapsed = started.elapsed();
    (posts.join_all().await, elapsed)
}

/// Role changes one at a time, through each instance in turn; the truth.
async fn probes(
    apps: Vec<Arc<TestApp>>,
    guild: GuildId,
    truth: Arc<Mutex<Vec<Version>>>,
    stop: Arc<AtomicBool>,
) -> Vec<Post> {
    let mut posts = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        sleep(PROBE_EVERY).await;
        let instance = n % apps.len();
        let started = Instant::now();
        let response = apps[instance]
            .post_events(
                "role-changes",
                event(EventKind::RoleChange, &guild, &(7_000 + n % 10).to_string()),
            )
            .await;
        let acked = Instant::now();
        posts.push(Post {
            started,
            latency: acked - started,
            ok: response.status().as_u16() == 201,
        });
        let digest = fresh_roles(&apps[0], &guild).await;
        truth.lock().unwrap().push(Version {
            sent: started,
            acked,
            instance: Some(instance),
            digest,
        });
        n += 1;
    }
    posts
}

struct Figures {
    fault: Fault,
    closed_after: Duration,
    first_hit: [Option<Duration>; 2],
    stale_other: Duration,
    stale_own: Duration,
    stale_reads: usize,
    unknown: usize,
    judged: usize,
    reads: [Vec<Duration>; 3],
    posts: [Vec<Duration>; 3],
    failures: usize,
    events_per_second: f64,
}

async fn scenario(fault: Fault, opts: &Opts) -> Figures {
    let mut env = TestEnv::new(opts.db, true).await;
    let apps = vec![Arc::new(env.spawn().await), Arc::new(env.spawn().await)];
    let guilds = seed_stable(&apps[0].store).await;
    for app in &apps {
        for guild in &guilds {
            warm(app, guild).await;
        }
    }
    let began = Instant::now();
    let truth = Arc::new(Mutex::new(vec![Version {
        sent: began,
        acked: began,
        instance: None,
        digest: fresh_roles(&apps[0], &guilds[0]).await,
    }]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = JoinSet::new();
    for r in 0..READERS {
        let app = apps[r % apps.len()].clone();
        readers.spawn(read_loop(app, r % 2, guilds.clone(), r * 5, stop.clone()));
    }
    let events = tokio::spawn(event_stream(
        apps.clone(),
        guilds.clone(),
        opts.rate,
        stop.clone(),
    ));
    let probing = tokio::spawn(probes(
        apps.clone(),
        guilds[0].clone(),
        truth.clone(),
        stop.clone(),
    ));

    let redis = env.redis.as_mut().unwrap();
    sleep(STEADY / 2).await;
    if fault == Fault::OlderSnapshot {
        redis.save();
    }
    sleep(STEADY / 2).await;
    let fault_at = Instant::now();
    match fault {
        Fault::Kill => {
            redis.kill();
            sleep(Duration::from_secs(1)).await;
            redis.restart();
        }
        Fault::Hang => {
            redis.pause();
            sleep(Duration::from_millis(1_500)).await;
            redis.resume();
        }
        Fault::OlderSnapshot => redis.restart(),
        Fault::FlushAll => assert_eq!(redis.cli(&["FLUSHALL"]), "OK"),
        Fault::PubSubKill => {
            redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
    }
    let back = Instant::now();
    for app in &apps {
        loop {
            let stats = cache_stats(app).await;
            if stats["status"] == "healthy" && stats["stats"]["circuit"] == "closed" {
                break;
            }
            if back.elapsed() > Duration::from_secs(20) {
                panic!("{}: caching did not resume in 20 s", fault.name());
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
    let closed = Instant::now();
    sleep(AFTER.saturating_sub(back.elapsed())).await;
    stop.store(true, Ordering::Relaxed);

    let reads: Vec<Read> = readers.join_all().await.into_iter().flatten().collect();
    let (mut posts, streamed) = events.await.expect("event stream");
    let events_per_second = posts.len() as f64 / streamed.as_secs_f64();
    posts.extend(probing.await.expect("probes"));
    let truth = truth.lock().unwrap().clone();

    // An instant fault (FLUSHALL, a killed connection) is judged over its
    // first second.
    let during_until = closed.max(fault_at + Duration::from_secs(1));
    let period = |t: Instant| {
        if t < fault_at {
            0
        } else if t < during_until {
            1
        } else {
            2
        }
    };
    let mut figures = Figures {
        fault,
        closed_after: closed - back,
        first_hit: [None, None],
        stale_other: Duration::ZERO,
        stale_own: Duration::ZERO,
        stale_reads: 0,
        unknown: 0,
        judged: 0,
        reads: Default::default(),
        posts: Default::default(),
        failures: reads.iter().filter(|r| !r.ok).count() + posts.iter().filter(|p| !p.ok).count(),
        events_per_second,
    };
    for read in &reads {
        // The first reads warm the connections.
        if read.started > began + Duration::from_millis(300) {
            figures.reads[period(read.started)].push(read.latency);
        }
        if read.hit && read.started >= back {
            let first = &mut figures.first_hit[read.instance];
            let at = read.started - back;
            *first = Some(first.map_or(at, |f| f.min(at)));
        }
        let Some(body) = read.roles else { continue };
        figures.judged += 1;
        let ended = read.started + read.latency;
        let Some(m) = truth
            .iter()
            .rposition(|v| v.sent < ended && v.digest == body)
        else {
            figures.unknown += 1;
            continue;
        };
        let Some(next) = truth.get(m + 1).filter(|v| v.acked <= read.started) else {
            continue;
        };
        figures.stale_reads += 1;
        let stale = read.started - next.acked;
        match truth[m + 1..]
            .iter()
            .find(|v| v.instance == Some(read.instance) && v.acked <= read.started)
        {
            Some(own) => figures.stale_own = figures.stale_own.max(read.started - own.acked),
            None => figures.stale_other = figures.stale_other.max(stale),
        }
    }
    for post in &posts {
        figures.posts[period(post.started)].push(post.latency);
    }
    figures
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// `p50 / p99 / max` in milliseconds, and the count.
fn spread(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "{} / {} / {} ({})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

#[tokio::main]
async fn main() {
    let opts = match Opts::parse() {
        Ok(opts) => opts,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Redis faults at {} events/s, 2 instances on {:?}, {cores} cores, {} build; \
         op timeout 100 ms, cool-down 200 ms, journal interval 200 ms",
        opts.rate,
        opts.db,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut all = Vec::new();
    for &fault in &opts.faults {
        eprintln!("[faults] {} ...", fault.describe());
        all.push(scenario(fault, &opts).await);
    }

    println!();
    println!(
        "| fault | Redis answers → both breakers closed | → first hit (A / B) | roles stale window, other instance / own | stale reads (of judged) | non-2xx | events/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for f in &all {
        let hit = |h: Option<Duration>| h.map_or("none".into(), ms);
        println!(
            "| {} | {} ms | {} / {} ms | {} / {} ms | {} ({}){} | {} | {:.0} |",
            f.fault.describe(),
            ms(f.closed_after),
            hit(f.first_hit[0]),
            hit(f.first_hit[1]),
            ms(f.stale_other),
            ms(f.stale_own),
            f.stale_reads,
            f.judged,
            if f.unknown > 0 {
                format!(", {} unknown", f.unknown)
            } else {
                String::new()
            },
            f.failures,
            f.events_per_second
        );
    }
    println!();
    println!(
        "Latency in ms, p50 / p99 / max (samples): before the fault, during it (until both breakers \
         are closed again, at least 1 s), after."
    );
    println!();
    println!("| fault | reads before | reads during | reads after | events during |");
    println!("| --- | --- | --- | --- | --- |");
    for f in &mut all {
        println!(
            "| {} | {} | {} | {} | {} |",
            f.fault.describe(),
            spread(&mut f.reads[0]),
            spread(&mut f.reads[1]),
            spread(&mut f.reads[2]),
            spread(&mut f.posts[1]),
        );
    }
}
