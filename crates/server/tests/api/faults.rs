//! Redis faults under traffic (issue 9), each on SQLite and PostgreSQL, with
//! the test settings' short intervals (op timeout 100 ms, cool-down 200 ms,
//! journal interval 200 ms):
//!
//! 1. Redis killed and restarted while events keep arriving (10/s, 100/s):
//!    caching resumes within 3 s of the restart (SPEC 1.2.10);
//! 2. Redis hangs under two instances: an event ingested on A reaches B's
//!    L1 through the database journal within the journal interval + 0.5 s,
//!    although B skips Redis (SPEC 1.2.12);
//! 3. Redis restarts from a snapshot older than an invalidation it had
//!    taken (and holding a loading lease nobody will give back): not one
//!    stale read, and none waits the lease out (SPEC 1.2.11, 1.2.5);
//! 4. reads racing ingestion on one instance: no read that starts after an
//!    event's 201 serves the pre-event value (SPEC 1.2.13).
//!
//! The data is [`seed_stable`]'s, so that a fresh computation changes only
//! when an event is ingested.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, sleep};

use crate::helpers::*;
use crate::invalidation::{assert_all_fresh, event};

/// The settings' journal interval, plus the 0.5 s the issue allows.
const STALE_WINDOW: Duration = Duration::from_millis(700);
/// Added to [`STALE_WINDOW`] where a test waits for it: debug builds on two
/// cores, with other tests running beside.
const DEBUG_SLACK: Duration = Duration::from_millis(300);

/// Requests that answered with an unexpected status (or not at all).
type Failures = Vec<String>;

/// Events of kinds that change neither `roles` nor any other guild, posted
/// at a steady rate, each in its own request so a slow one does not slow
/// the rate.
struct EventStream {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Failures)>,
}

impl EventStream {
    fn start(app: Arc<TestApp>, guilds: Vec<GuildId>, per_second: u32) -> EventStream {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut posts = JoinSet::new();
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let kind =
                    [EventKind::Message, EventKind::Typing, EventKind::Presence][(n % 3) as usize];
                let guild = &guilds[(n as usize / 3) % guilds.len()];
                let body = event(kind, guild, &(4_000 + n % 40).to_string());
                let app = app.clone();
                posts.spawn(async move {
                    let path = format!("/api/events/{}", kind.as_str());
                    match app
                        .request(reqwest::Method::POST, &path, Some(INGEST))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().as_u16() == 201 => None,
                        Ok(r) => Some(format!("POST {path}: {}", r.status())),
                        Err(e) => Some(format!("POST {path}: {e}")),
                    }
                });
                n += 1;
            }
            let failures = posts.join_all().await.into_iter().flatten().collect();
            (n, failures)
        });
        EventStream { stop, task }
    }

    /// Stops posting; returns how many events were posted, once all answered.
    async fn stop(self) -> (u64, Failures) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("event task")
    }
}

/// Reads all six analytics of the guilds in a loop, counting failures.
struct ReadLoop {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Failures)>,
}

impl ReadLoop {
    fn start(app: Arc<TestApp>, guilds: Vec<GuildId>, pause: Duration) -> ReadLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut reads, mut failures) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                for guild in &guilds {
                    for &kind in AnalyticsKind::ALL {
                        let path = format!("/api/analytics/{kind}?guildId={}", guild.as_str());
                        match app
                            .request(reqwest::Method::GET, &path, Some(API))
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => failures.push(format!("GET {path}: {}", r.status())),
                            Err(e) => failures.push(format!("GET {path}: {e}")),
                        }
                        reads += 1;
                        sleep(pause).await;
                    }
                }
            }
            (reads, failures)
        });
        ReadLoop { stop, task }
    }

    async fn stop(self) -> (u64, Failures) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("read task")
    }
}

async fn fresh(app: &TestApp, kind: AnalyticsKind, guild: &GuildId) -> Value {
    app.store
        .analytics_now(kind, guild, None)
        .await
        .unwrap()
        .to_json()
}

/// `status` and `circuit` of the instance's cache statistics.
async fn breaker(app: &TestApp) -> (String, String) {
    let stats = cache_stats(app).await;
    (
        stats["status"].as_str().unwrap_or_default().to_string(),
        stats["stats"]["circuit"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn healthy() -> (String, String) {
    ("healthy".into(), "closed".into())
}

// --- 1. A restart while events keep arriving -------------------------------

async fn caching_resumes_after_a_restart_while_events_keep_arriving(db: Db, per_second: u32) {
    let mut env = TestEnv::new(db, true).await;
    let app = Arc::new(env.spawn().await);
    let guilds = seed_stable(&app.store).await;
    for guild in &guilds {
        warm(&app, guild).await;
    }
    let events = EventStream::start(app.clone(), guilds.clone(), per_second);
    let reads = ReadLoop::start(app.clone(), guilds.clone(), Duration::from_millis(5));
    sleep(Duration::from_millis(500)).await;

    let redis = env.redis.as_mut().unwrap();
    // Back with the data it had then: entries the events since invalidated.
    redis.save();
    redis.kill();
    sleep(Duration::from_millis(1_500)).await;
    assert_eq!(breaker(&app).await.0, "degraded", "{db:?}: Redis is down");
    redis.restart();
    let restarted = Instant::now();

    // Caching resumes while events keep coming: the breaker closes, and a
    // repeated read (roles: no event of the stream changes it) is a hit.
    let roles_path = format!("/api/analytics/roles?guildId={}", guilds[0].as_str());
    let recovery = loop {
        let state = breaker(&app).await;
        if state == healthy() {
            app.get(&roles_path, Some(API)).await;
            let again = app.get(&roles_path, Some(API)).await;
            if header(&again, "x-cache") == "hit" {
                break restarted.elapsed();
            }
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(3),
            "{db:?}, {per_second} events/s: caching did not resume within 3 s of the restart \
             (status, circuit: {state:?})"
        );
        sleep(Duration::from_millis(20)).await;
    };
    // Events keep flowing: caching stays on.
    sleep(Duration::from_millis(500)).await;
    assert_eq!(breaker(&app).await, healthy(), "{db:?}, {per_second}/s");

    let (posted, event_failures) = events.stop().await;
    let (read, read_failures) = reads.stop().await;
    let seconds = restarted.elapsed().as_secs_f64() + 2.0;
    println!(
        "{db:?}, {per_second} events/s: caching resumed {recovery:?} after the restart; \
         {posted} events posted (~{:.0}/s), {read} reads",
        posted as f64 / seconds
    );
    assert!(
        event_failures.is_empty() && read_failures.is_empty(),
        "{db:?}: non-2xx responses: {event_failures:?} {read_failures:?}"
    );
    assert!(
        posted as f64 >= f64::from(per_second) * seconds * 0.7,
        "the stream posted {posted} events in {seconds:.1} s: too few to prove anything"
    );
    for guild in &guilds {
        assert_all_fresh(&app, guild, &format!("{db:?}, after the restart")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_resumes_after_a_restart_under_10_events_per_second_sqlite() {
    caching_resumes_after_a_restart_while_events_keep_arriving(Db::Sqlite, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_resumes_after_a_restart_under_10_events_per_second_postgres() {
    caching_resumes_after_a_restart_while_events_keep_arriving(Db::Postgres, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_resumes_after_a_restart_under_100_events_per_second_sqlite() {
    caching_resumes_after_a_restart_while_events_keep_arriving(Db::Sqlite, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_resumes_after_a_restart_under_100_events_per_second_postgres() {
    caching_resumes_after_a_restart_while_events_keep_arriving(Db::Postgres, 100).await;
}

// --- 2. A hang under two instances -----------------------------------------

async fn an_event_on_a_reaches_b_l1_while_redis_hangs(db: Db) {
    let env = TestEnv::new(db, true).await;
    let a = env.spawn().await;
    let b = env.spawn().await;
    let guilds = seed_stable(&a.store).await;
    let (guild, other) = (&guilds[0], &guilds[1]);
    warm(&b, guild).await;
    let redis = env.redis.as_ref().unwrap();
    redis.pause();

    // With Redis frozen, B's hits can only come from its L1.
    for &kind in AnalyticsKind::ALL {
        let response = b.analytics(kind.as_str(), guild).await;
        assert_eq!(
            header(&response, "x-cache"),
            "hit",
            "{db:?}: {kind} in B's L1"
        );
    }
    // B's breaker opens: reads of another guild miss L1 and time out on Redis.
    let deadline = Instant::now() + Duration::from_secs(5);
    while breaker(&b).await.1 != "open" {
        assert!(
            Instant::now() < deadline,
            "{db:?}: B's breaker did not open"
        );
        for &kind in AnalyticsKind::ALL {
            b.analytics(kind.as_str(), other).await;
        }
    }
    let before = json(b.analytics("roles", guild).await).await;

    let response = a
        .post_events("role-changes", event(EventKind::RoleChange, guild, "7007"))
        .await;
    assert_eq!(response.status().as_u16(), 201, "{db:?}");
    let acked = Instant::now();
    let expected = fresh(&a, AnalyticsKind::Roles, guild).await;
    assert_ne!(expected, before, "{db:?}: the role change changes roles");

    // B serves the pre-event roles from its L1 until the journal reaches it,
    // then the post-event roles (from the database: Redis is skipped), and
    // never the old ones again.
    let mut fresh_after = None;
    let mut reads = 0;
    while acked.elapsed() < Duration::from_millis(1_500) {
        let started = acked.elapsed();
        let served = json(b.analytics("roles", guild).await).await;
        reads += 1;
        if served == expected {
            fresh_after.get_or_insert(started);
        } else {
            assert_eq!(served, before, "{db:?}: B served neither value");
            assert!(
                fresh_after.is_none(),
                "{db:?}: B served the pre-event roles {started:?} after the 201, \
                 after serving the fresh ones"
            );
        }
        sleep(Duration::from_millis(10)).await;
    }
    redis.resume();
    let fresh_after = fresh_after.expect("B never served the post-event roles during the hang");
    println!(
        "{db:?}: Redis hanging, B served the post-event roles {fresh_after:?} after A's 201 \
         ({reads} reads of B)"
    );
    assert!(
        fresh_after <= STALE_WINDOW + DEBUG_SLACK,
        "{db:?}: B served the pre-event roles for {fresh_after:?} after the 201 \
         (allowed: journal interval + 0.5 s = {STALE_WINDOW:?}, plus {DEBUG_SLACK:?} for debug builds)"
    );

    // Redis answers again: both instances resume caching, nothing stale.
    let deadline = Instant::now() + Duration::from_secs(3);
    for app in [&a, &b] {
        while breaker(app).await != healthy() {
            assert!(Instant::now() < deadline, "{db:?}: caching did not resume");
            sleep(Duration::from_millis(20)).await;
        }
    }
    assert_all_fresh(&a, guild, &format!("{db:?}: A after the hang")).await;
    assert_all_fresh(&b, guild, &format!("{db:?}: B after the hang")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_a_reaches_b_l1_while_redis_hangs_sqlite() {
    an_event_on_a_reaches_b_l1_while_redis_hangs(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_a_reaches_b_l1_while_redis_hangs_postgres() {
    an_event_on_a_reaches_b_l1_while_redis_hangs(Db::Postgres).await;
}

// --- 3. A restart from an older snapshot ----------------------------------

async fn a_restart_from_an_older_snapshot_serves_nothing_stale(db: Db) {
    let mut env = TestEnv::new(db, true).await;
    let app = env.spawn().await;
    let guilds = seed_stable(&app.store).await;
    let guild = &guilds[0];
    let key = format!("spywatcher:analytics:roles:{}:all", guild.as_str());
    let before = json(app.analytics("roles", guild).await).await;
    assert_eq!(
        header(&app.analytics("roles", guild).await, "x-cache"),
        "hit"
    );

    let redis = env.redis.as_mut().unwrap();
    // The snapshot also catches a load of roles in progress: its lease,
    // which its holder gives back afterwards (a busy server always has some).
    // (Leases are per generation of the tags' versions; the event below
    // starts a new one, and a lease of the current generation restored from
    // a snapshot is dropped when the server is verified: see the cache
    // crate's `a_lease_restored_from_a_snapshot_does_not_hold_up_readers`.)
    let lease = format!(
        "spywatcher:~lock:analytics:roles:{}:all#0000000000000000",
        guild.as_str()
    );
    assert_eq!(redis.cli(&["SET", &lease, "12345", "PX", "5000"]), "OK");
    redis.save();
    redis.cli(&["DEL", &lease]);
    let response = app
        .post_events("role-changes", event(EventKind::RoleChange, guild, "7007"))
        .await;
    assert_eq!(response.status().as_u16(), 201, "{db:?}");
    // Redis took the invalidation: nothing is pending.
    assert!(app.store.pending_invalidations().await.unwrap().is_empty());
    let expected = fresh(&app, AnalyticsKind::Roles, guild).await;
    assert_ne!(expected, before, "{db:?}: the role change changes roles");

    // A crash, and a restart from the snapshot: the pre-event entry is back.
    redis.kill();
    redis.restart();
    assert_eq!(redis.cli(&["EXISTS", &key]), "1", "{db:?}: {key}");
    assert_eq!(redis.cli(&["EXISTS", &lease]), "1", "{db:?}: {lease}");

    let started = Instant::now();
    let (mut reads, mut stale, mut hits) = (0, 0, 0);
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(2) {
        let sent = Instant::now();
        let response = app.analytics("roles", guild).await;
        slowest = slowest.max(sent.elapsed());
        assert_eq!(response.status().as_u16(), 200);
        hits += usize::from(header(&response, "x-cache") == "hit");
        let served = json(response).await;
        reads += 1;
        if served != expected {
            assert_eq!(served, before, "{db:?}: neither value");
            stale += 1;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stale, 0,
        "{db:?}: {stale} of {reads} reads after the restart served the pre-event roles"
    );
    // Nobody gives the restored lease back: no read may wait it out.
    assert!(
        slowest < Duration::from_secs(1),
        "{db:?}: a read after the restart took {slowest:?}"
    );
    // Caching resumed.
    assert_eq!(breaker(&app).await, healthy(), "{db:?}");
    let response = app.analytics("roles", guild).await;
    assert_eq!(header(&response, "x-cache"), "hit", "{db:?}");
    assert_eq!(json(response).await, expected);
    println!(
        "{db:?}: {reads} reads after a restart from an older snapshot, none stale, \
         {hits} hits, the slowest {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_an_older_snapshot_serves_nothing_stale_sqlite() {
    a_restart_from_an_older_snapshot_serves_nothing_stale(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_an_older_snapshot_serves_nothing_stale_postgres() {
    a_restart_from_an_older_snapshot_serves_nothing_stale(Db::Postgres).await;
}

// --- 4. Reads racing ingestion on one instance -----------------------------

/// One read of the racing readers.
struct Read {
    started: Instant,
    ended: Instant,
    body: Value,
}

/// One event: when it was sent, when its 201 came, and ghosts right after.
struct Ingested {
    sent: Instant,
    acked: Instant,
    ghosts: Value,
}

async fn no_read_after_a_201_serves_the_pre_event_value(db: Db) {
    const EVENTS: usize = 60;
    const READERS: usize = 5;
    let env = TestEnv::new(db, true).await;
    let app = Arc::new(env.spawn().await);
    let guilds = seed_stable(&app.store).await;
    let guild = guilds[0].clone();
    let rows = json(app.analytics("ghosts", &guild).await).await;
    let users: Vec<String> = rows.as_array().unwrap()[..5]
        .iter()
        .map(|row| row["userId"].as_str().unwrap().to_string())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = JoinSet::new();
    for _ in 0..READERS {
        let (app, guild, stop) = (app.clone(), guild.clone(), stop.clone());
        readers.spawn(async move {
            let mut reads = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = app.analytics("ghosts", &guild).await;
                assert_eq!(response.status().as_u16(), 200);
                let body = json(response).await;
                reads.push(Read {
                    started,
                    ended: Instant::now(),
                    body,
                });
            }
            reads
        });
    }

    let mut events = Vec::with_capacity(EVENTS);
    let mut previous = fresh(&app, AnalyticsKind::Ghosts, &guild).await;
    let before = previous.clone();
    for i in 0..EVENTS {
        sleep(Duration::from_millis(40)).await;
        let kind = if i % 2 == 0 {
            EventKind::Typing
        } else {
            EventKind::Message
        };
        let sent = Instant::now();
        let response = app
            .post_events(kind.as_str(), event(kind, &guild, &users[i % users.len()]))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{db:?}");
        let acked = Instant::now();
        // Before the next event: the value every later read must serve.
        let ghosts = fresh(&app, AnalyticsKind::Ghosts, &guild).await;
        assert_ne!(ghosts, previous, "{db:?}: event {i} changes ghosts");
        previous = ghosts.clone();
        events.push(Ingested {
            sent,
            acked,
            ghosts,
        });
    }
    sleep(Duration::from_millis(40)).await;
    stop.store(true, Ordering::Relaxed);
    let reads: Vec<Read> = readers.join_all().await.into_iter().flatten().collect();

    // A read that started after event i's 201 serves event i's value, or
    // that of a later event sent before the read ended (a slow read may
    // overlap several).
    let (mut checked, mut stale) = (0, Vec::new());
    for read in &reads {
        let Some(i) = events.iter().rposition(|e| e.acked <= read.started) else {
            continue;
        };
        checked += 1;
        let valid = events[i..]
            .iter()
            .take_while(|e| e.acked <= read.started || e.sent < read.ended)
            .any(|e| read.body == e.ghosts);
        if !valid {
            // Which value it served: an earlier event's (stale), or one
            // the database never had?
            let served = events.iter().rposition(|e| e.ghosts == read.body);
            stale.push(format!(
                "a read started {:?} after the 201 of event {i} served {}",
                read.started - events[i].acked,
                match served {
                    Some(j) => format!("event {j}'s value"),
                    None if read.body == before => "the value before any event".to_string(),
                    None => format!("a value no event had: {}", read.body),
                }
            ));
        }
    }
    println!(
        "{db:?}: {} reads of ghosts racing {EVENTS} events, {checked} started after a 201, {} stale",
        reads.len(),
        stale.len()
    );
    assert!(
        checked >= EVENTS * 5,
        "{db:?}: only {checked} reads to check"
    );
    assert!(stale.is_empty(), "{db:?}: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_a_201_serves_the_pre_event_value_sqlite() {
    no_read_after_a_201_serves_the_pre_event_value(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_a_201_serves_the_pre_event_value_postgres() {
    no_read_after_a_201_serves_the_pre_event_value(Db::Postgres).await;
}
