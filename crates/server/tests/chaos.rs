//! Chaos (issue 9): two instances on one database and one Redis, reads on
//! both without pause (all six analytics, two guilds), events at ~10/s
//! spread over the guilds and ingested through both instances, and Redis
//! faults one after another while the traffic flows:
//!
//! 1. killed (SIGKILL), restarted 1 s later (empty);
//! 2. hung (SIGSTOP) for 1.5 s, then continued;
//! 3. killed and restarted from a snapshot taken 2 s (some 20 events)
//!    earlier;
//! 4. `FLUSHALL` by an operator;
//! 5. the pub/sub connections killed (`CLIENT KILL TYPE pubsub`).
//!
//! The truth: events are ingested one at a time, and after each 201 the
//! analytics the event changes are computed afresh (`analytics_now`) before
//! the next event is sent, so the list of those values, per guild and
//! analytics, holds every value the database had in the order it had them
//! (the data is `seed_stable`'s: no value changes without an event). A read
//! serves one of them; it is stale by `t` if a later one had been
//! acknowledged `t` before the read started. No read may be stale by more
//! than the journal interval + 0.5 s (SPEC 1.2.6, 1.2.12), nor be stale at
//! all by an event that its own instance ingested (SPEC 1.2.13); none may
//! serve a value the database never had, answer other than 2xx, or take
//! 3 s or more (a loading lease is 5 s: no read may wait one out).
//!
//! A separate test binary, so that the other API tests do not run beside it
//! on the machine's cores; its two tests (SQLite, PostgreSQL) take turns.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, sleep};

use helpers::*;

/// The settings' journal interval (200 ms) plus the 0.5 s of the issue.
const WINDOW: Duration = Duration::from_millis(700);
const READERS: usize = 4;
const EVENTS_PER_SECOND: u32 = 10;
const PHASES: [&str; 6] = [
    "steady",
    "killed, restarted empty",
    "hung 1.5 s",
    "restarted from an older snapshot",
    "FLUSHALL",
    "pub/sub connections killed",
];

/// The two tests take turns: each is timing-sensitive.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A value the database had, from the acknowledgement of the event that
/// made it (the first ones: from before the traffic).
#[derive(Clone, Copy)]
struct Version {
    sent: Instant,
    acked: Instant,
    /// The instance that ingested the event.
    instance: Option<usize>,
    digest: u64,
}

struct Read {
    instance: usize,
    slot: usize,
    started: Instant,
    ended: Instant,
    phase: usize,
    digest: u64,
}

/// Values per (guild, analytics): index `guild * 6 + analytics`.
type Truth = Arc<Mutex<Vec<Vec<Version>>>>;

fn slot(guild: usize, kind: AnalyticsKind) -> usize {
    guild * AnalyticsKind::ALL.len() + AnalyticsKind::ALL.iter().position(|&k| k == kind).unwrap()
}

fn digest(value: &Value) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(value).unwrap())
}

async fn fresh(app: &TestApp, kind: AnalyticsKind, guild: &GuildId) -> Value {
    app.store
        .analytics_now(kind, guild, None)
        .await
        .unwrap()
        .to_json()
}

async fn read_loop(
    app: Arc<TestApp>,
    instance: usize,
    guilds: Vec<GuildId>,
    first: usize,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
) -> (Vec<Read>, Vec<String>) {
    let (mut reads, mut failures) = (Vec::new(), Vec::new());
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let guild = i % guilds.len();
        let kind = AnalyticsKind::ALL[(i / guilds.len()) % AnalyticsKind::ALL.len()];
        i += 1;
        let path = format!("/api/analytics/{kind}?guildId={}", guilds[guild].as_str());
        let started = Instant::now();
        let phase = phase.load(Ordering::Relaxed);
        let response = app.request(reqwest::Method::GET, &path, Some(API)).send();
        match response.await {
            Ok(r) if r.status().as_u16() == 200 => match r.json::<Value>().await {
                Ok(body) => reads.push(Read {
                    instance,
                    slot: slot(guild, kind),
                    started,
                    ended: Instant::now(),
                    phase,
                    digest: digest(&body),
                }),
                Err(e) => failures.push(format!("instance {instance} GET {path}: {e}")),
            },
            Ok(r) => failures.push(format!("instance {instance} GET {path}: {}", r.status())),
            Err(e) => failures.push(format!("instance {instance} GET {path}: {e}")),
        }
    }
    (reads, failures)
}

/// Events one at a time, through both instances, over both guilds, every
/// kind; after each 201 the analytics it changes are computed afresh.
async fn ingest_loop(
    apps: Vec<Arc<TestApp>>,
    guilds: Vec<GuildId>,
    truth: Truth,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / EVENTS_PER_SECOND);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut n, mut failures) = (0usize, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let kind = EventKind::ALL[n % EventKind::ALL.len()];
        let guild = n % guilds.len();
        let instance = (n / guilds.len()) % apps.len();
        let user = (6_000 + (n / 10) % 20).to_string();
        let body = event(kind, &guilds[guild], &user);
        let path = format!("/api/events/{}", kind.as_str());
        let sent = Instant::now();
        let response = apps[instance]
            .request(reqwest::Method::POST, &path, Some(INGEST))
            .json(&body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().as_u16() == 201 => {}
            Ok(r) => failures.push(format!("instance {instance} POST {path}: {}", r.status())),
            Err(e) => failures.push(format!("instance {instance} POST {path}: {e}")),
        }
        let acked = Instant::now();
        for &analytics in kind.invalidates() {
            let value = fresh(&apps[0], analytics, &guilds[guild]).await;
            truth.lock().unwrap()[slot(guild, analytics)].push(Version {
                sent,
                acked,
                instance: Some(instance),
                digest: digest(&value),
            });
        }
        n += 1;
    }
    (n as u64, failures)
}

/// Waits until both instances read and write Redis again; how long it took.
async fn recovery(apps: &[Arc<TestApp>], since: Instant, fault: &str) -> Duration {
    for app in apps {
        loop {
            let stats = cache_stats(app).await;
            if stats["status"] == "healthy" && stats["stats"]["circuit"] == "closed" {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{fault}: caching did not resume within 5 s: {}",
                stats["status"]
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
    since.elapsed()
}

/// How stale each read was, from the truth.
#[derive(Default)]
struct Verdict {
    /// Reads that served a value superseded before they started.
    late: usize,
    /// ...by more than the window.
    beyond: Vec<String>,
    /// Reads that served a value the database never had.
    unknown: Vec<String>,
    max_stale: Duration,
    /// Counting only events ingested on the reading instance.
    max_stale_own: Duration,
    max_stale_per_phase: [Duration; PHASES.len()],
    /// The slowest read that began in each phase.
    max_latency_per_phase: [Duration; PHASES.len()],
}

fn judge(reads: &[Read], truth: &[Vec<Version>], origin: Instant) -> Verdict {
    let mut verdict = Verdict::default();
    for read in reads {
        let latency = &mut verdict.max_latency_per_phase[read.phase];
        *latency = (*latency).max(read.ended - read.started);
        let versions = &truth[read.slot];
        let at = |t: Instant| t.duration_since(origin);
        let Some(m) = versions
            .iter()
            .rposition(|v| v.sent < read.ended && v.digest == read.digest)
        else {
            verdict.unknown.push(format!(
                "instance {} slot {} read at {:?}",
                read.instance,
                read.slot,
                at(read.started)
            ));
            continue;
        };
        let Some(next) = versions.get(m + 1).filter(|v| v.acked <= read.started) else {
            continue;
        };
        let stale = read.started - next.acked;
        verdict.late += 1;
        verdict.max_stale = verdict.max_stale.max(stale);
        let phase = &mut verdict.max_stale_per_phase[read.phase];
        *phase = (*phase).max(stale);
        if let Some(own) = versions[m + 1..]
            .iter()
            .find(|v| v.instance == Some(read.instance) && v.acked <= read.started)
        {
            verdict.max_stale_own = verdict.max_stale_own.max(read.started - own.acked);
        }
        if stale > WINDOW {
            verdict.beyond.push(format!(
                "instance {} slot {} during '{}': read at {:?} served a value superseded at {:?}",
                read.instance,
                read.slot,
                PHASES[read.phase],
                at(read.started),
                at(next.acked)
            ));
        }
    }
    verdict
}

async fn chaos(db: Db) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut env = TestEnv::new(db, true).await;
    let apps = vec![Arc::new(env.spawn().await), Arc::new(env.spawn().await)];
    let guilds = seed_stable(&apps[0].store).await;
    let origin = Instant::now();
    let mut initial = Vec::new();
    for guild in &guilds {
        for &kind in AnalyticsKind::ALL {
            initial.push(vec![Version {
                sent: origin,
                acked: origin,
                instance: None,
                digest: digest(&fresh(&apps[0], kind, guild).await),
            }]);
        }
    }
    let truth: Truth = Arc::new(Mutex::new(initial));
    for app in &apps {
        for guild in &guilds {
            warm(app, guild).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let mut readers = JoinSet::new();
    for r in 0..READERS {
        readers.spawn(read_loop(
            apps[r % apps.len()].clone(),
            r % apps.len(),
            guilds.clone(),
            r * 5,
            stop.clone(),
            phase.clone(),
        ));
    }
    let ingester = tokio::spawn(ingest_loop(
        apps.clone(),
        guilds.clone(),
        truth.clone(),
        stop.clone(),
    ));

    let mut recoveries = Vec::new();
    sleep(Duration::from_secs(2)).await;
    let redis = env.redis.as_mut().unwrap();

    phase.store(1, Ordering::Relaxed);
    redis.kill();
    sleep(Duration::from_secs(1)).await;
    redis.restart();
    let back = Instant::now();
    recoveries.push((PHASES[1], recovery(&apps, back, PHASES[1]).await));
    sleep(Duration::from_secs(3).saturating_sub(back.elapsed())).await;

    phase.store(2, Ordering::Relaxed);
    redis.pause();
    sleep(Duration::from_millis(1_500)).await;
    redis.resume();
    let back = Instant::now();
    recoveries.push((PHASES[2], recovery(&apps, back, PHASES[2]).await));
    sleep(Duration::from_secs(2).saturating_sub(back.elapsed())).await;

    // The snapshot the next restart goes back to: the events of the next
    // 2 s are invalidated in Redis, then undone by the restart.
    redis.save();
    sleep(Duration::from_secs(2)).await;
    phase.store(3, Ordering::Relaxed);
    redis.restart();
    let back = Instant::now();
    recoveries.push((PHASES[3], recovery(&apps, back, PHASES[3]).await));
    sleep(Duration::from_secs(3).saturating_sub(back.elapsed())).await;

    phase.store(4, Ordering::Relaxed);
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    let back = Instant::now();
    recoveries.push((PHASES[4], recovery(&apps, back, PHASES[4]).await));
    sleep(Duration::from_secs(2).saturating_sub(back.elapsed())).await;

    phase.store(5, Ordering::Relaxed);
    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let back = Instant::now();
    recoveries.push((PHASES[5], recovery(&apps, back, PHASES[5]).await));
    sleep(Duration::from_secs(2).saturating_sub(back.elapsed())).await;

    stop.store(true, Ordering::Relaxed);
    let (events, mut failures) = ingester.await.expect("ingester");
    let mut reads = Vec::new();
    for (mut r, f) in readers.join_all().await {
        reads.append(&mut r);
        failures.extend(f);
    }
    let elapsed = origin.elapsed();

    // Once the window has passed, every instance serves the last values.
    sleep(WINDOW).await;
    for (i, app) in apps.iter().enumerate() {
        for guild in &guilds {
            for &kind in AnalyticsKind::ALL {
                let served = json(app.analytics(kind.as_str(), guild).await).await;
                assert_eq!(
                    served,
                    fresh(app, kind, guild).await,
                    "{db:?}: instance {i}, {kind} at the end"
                );
            }
        }
    }

    let truth = truth.lock().unwrap();
    let verdict = judge(&reads, &truth, origin);
    let versions: usize = truth.iter().map(|v| v.len() - 1).sum();
    println!("chaos on {db:?}: {elapsed:.1?} of traffic on 2 instances");
    println!(
        "  {} reads ({:.0}/s), {events} events ({:.1}/s, {versions} new analytics values), 5 faults, \
         {} pub/sub connections killed",
        reads.len(),
        reads.len() as f64 / elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        killed
    );
    for (fault, took) in &recoveries {
        println!("  {fault}: caching resumed on both instances {took:?} after Redis answered");
    }
    println!(
        "  stale reads within the window: {}; beyond it: {}; unknown values: {}",
        verdict.late,
        verdict.beyond.len(),
        verdict.unknown.len()
    );
    println!(
        "  max observed stale window {:?} (events of the reading instance: {:?}; allowed {WINDOW:?})",
        verdict.max_stale, verdict.max_stale_own
    );
    for (i, name) in PHASES.iter().enumerate() {
        println!(
            "    during '{name}': stale {:?}, slowest read {:?}",
            verdict.max_stale_per_phase[i], verdict.max_latency_per_phase[i]
        );
    }

    assert!(failures.is_empty(), "{db:?}: non-2xx: {failures:?}");
    // A read costs some call budgets (100 ms each) at worst, whatever Redis
    // does (about 1.1 s seen, in a debug build): none waits out a loading
    // lease (5 s) that its holder could not give back, or an announcement
    // that could not come (lock.rs).
    let slowest = verdict.max_latency_per_phase.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(3),
        "{db:?}: a read took {slowest:?}"
    );
    assert!(
        verdict.beyond.is_empty(),
        "{db:?}: {} reads stale beyond {WINDOW:?}: {:?}",
        verdict.beyond.len(),
        &verdict.beyond[..verdict.beyond.len().min(20)]
    );
    // SPEC 1.2.13: on the instance that ingested it, an event is seen at once.
    assert_eq!(
        verdict.max_stale_own,
        Duration::ZERO,
        "{db:?}: a read served a value its own instance had invalidated before the read began"
    );
    assert!(
        verdict.unknown.is_empty(),
        "{db:?}: values the database never had: {:?}",
        &verdict.unknown[..verdict.unknown.len().min(20)]
    );
    assert!(
        events >= u64::from(EVENTS_PER_SECOND) * elapsed.as_secs() / 2,
        "{db:?}: only {events} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_beyond_the_window_through_five_redis_faults_sqlite() {
    chaos(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_beyond_the_window_through_five_redis_faults_postgres() {
    chaos(Db::Postgres).await;
}
