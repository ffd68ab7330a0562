//! `CACHE_WARM_ON_START`: the reads counted per guild reach the database
//! (at an interval, and at a graceful shutdown), and a restarted instance
//! warms the busiest guilds in the background, so that their first reads
//! are hits, while it answers requests from the start.

use std::time::Duration;

use serde_json::json;
use spywatcher::startup::Application;
use spywatcher_analytics::{AnalyticsKind, EventStore, GuildId};
use spywatcher_cache::testing::Step;

use crate::helpers::*;

/// Reads counted over the last day, as the store ranks them.
async fn recorded_reads(app: &TestApp) -> Vec<(GuildId, u64)> {
    let day_ago = chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000;
    app.store.busiest_guilds(day_ago, 10).await.unwrap()
}

/// What `X-Cache` says of each analytics of `guild`, read once each.
async fn first_reads(app: &TestApp, guild: &GuildId) -> Vec<String> {
    let mut said = Vec::new();
    for &kind in AnalyticsKind::ALL {
        let response = app.analytics(kind.as_str(), guild).await;
        assert_eq!(response.status(), 200);
        said.push(header(&response, "x-cache"));
    }
    said
}

/// An instance reads guild A 18 times, B 6 times, C once, and is stopped
/// gracefully; a new one on the same database with
/// `CACHE_WARM_ON_START=2` warms A and B (and not C) before their first
/// reads. With Redis, Redis is emptied between the two, so warming is what
/// fills it.
async fn a_restart_warms_the_busiest_guilds(db: Db, backend: Backend) {
    let env = TestEnv::on(db, backend).await;
    let mut settings = env.settings();
    // Only the flush at the shutdown can record the reads.
    settings.read_counts_flush_interval = Duration::from_secs(3600);
    // Seeded before the instance starts: a bulk load into SQLite while a
    // Redis-backed instance starts up sometimes fails with "index
    // events_guild_kind_time already exists" (seen without this feature too).
    let guilds = seed(&EventStore::connect(&env.database_url()).await.unwrap()).await;
    let first = env.spawn_with(settings.clone()).await;
    let (a, b) = (&guilds[0], &guilds[1]);
    let c: GuildId = "4242".parse().unwrap();
    for _ in 0..3 {
        warm(&first, a).await;
    }
    warm(&first, b).await;
    first.analytics("ghosts", &c).await;
    assert!(recorded_reads(&first).await.is_empty(), "flushed early");
    let store = first.store.clone();
    first.stop().await;
    let day_ago = chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000;
    assert_eq!(
        store.busiest_guilds(day_ago, 10).await.unwrap(),
        [(a.clone(), 18), (b.clone(), 6), (c.clone(), 1)],
        "{db:?} {backend:?}: the shutdown flushed the counts"
    );
    if let Some(redis) = &env.redis {
        redis.cli(&["FLUSHALL"]);
    }

    settings.warm_on_start = 2;
    let second = env.spawn_with(settings).await;
    assert_eq!(
        warmed_on_start(&second).await,
        json!({ "status": "done", "guildsAsked": 2, "guilds": 2, "warmed": 2, "failed": 0 }),
        "{db:?} {backend:?}"
    );
    assert_eq!(
        first_reads(&second, a).await,
        ["hit"; 6],
        "{db:?} {backend:?}: A"
    );
    assert_eq!(
        first_reads(&second, b).await,
        ["hit"; 6],
        "{db:?} {backend:?}: B"
    );
    assert_eq!(
        first_reads(&second, &c).await,
        ["miss"; 6],
        "{db:?} {backend:?}: C"
    );
    if let Some(redis) = &env.redis {
        // The warmed entries are in Redis, not only in the instance's L1.
        let keys = redis.cli(&["KEYS", &format!("spywatcher:*{}*", a.as_str())]);
        assert!(keys.contains("analytics:ghosts"), "{keys}");
    }
    second.stop().await;
}

#[tokio::test]
async fn a_restart_warms_the_busiest_guilds_of_the_embedded_cache() {
    for db in BOTH_DATABASES {
        a_restart_warms_the_busiest_guilds(db, Backend::Embedded).await;
    }
}

#[tokio::test]
async fn a_restart_warms_the_busiest_guilds_into_redis() {
    a_restart_warms_the_busiest_guilds(Db::Sqlite, Backend::Redis).await;
}

/// Warming is held inside its first analytics (the cache's pause point
/// after a loader): the instance answers `/health/live` and serves reads
/// all the same, and reports warming as running until it is released.
#[tokio::test]
async fn the_start_is_not_delayed_by_warming() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let store = EventStore::connect(&env.database_url()).await.unwrap();
    let guilds = seed(&store).await;
    store
        .record_guild_reads(
            chrono::Utc::now().timestamp_millis(),
            &[(guilds[0].clone(), 5)],
        )
        .await
        .unwrap();
    let mut settings = env.settings();
    settings.warm_on_start = 1;
    let app = Application::build(&settings).await.unwrap();
    let paused = app.state().service.cache.hooks().arm(Step::LoaderDone);
    let app = env.run(app);
    tokio::time::timeout(Duration::from_secs(10), paused.reached())
        .await
        .expect("warming started");
    let live = tokio::time::timeout(Duration::from_secs(5), app.get("/health/live", None))
        .await
        .expect("/health/live answers while warming is held");
    assert_eq!(live.status(), 200);
    let ready = json(app.get("/health/ready", None).await).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["warmOnStart"],
        json!({ "status": "running", "guildsAsked": 1, "guilds": 1, "warmed": 0, "failed": 0 })
    );
    // Another guild's read is served too.
    let other = app.analytics("roles", &guilds[1]).await;
    assert_eq!(other.status(), 200);

    paused.release();
    assert_eq!(warmed_on_start(&app).await["warmed"], 1);
    app.stop().await;
}

/// The counts reach the database at the flush interval, without a
/// shutdown; warming's own reads are not counted.
#[tokio::test]
async fn read_counts_are_flushed_at_the_interval() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.read_counts_flush_interval = Duration::from_millis(100);
    let app = env.spawn_with(settings).await;
    let guild: GuildId = "31337".parse().unwrap();
    for _ in 0..3 {
        app.analytics("lurkers", &guild).await;
    }
    // The admin warm route computes six analytics: not reads.
    let warmed = app
        .request(
            reqwest::Method::POST,
            "/api/admin/monitoring/cache/warm?guildId=31337",
            Some(ADMIN),
        )
        .send()
        .await
        .unwrap();
    assert!(warmed.status().is_success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while recorded_reads(&app).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past a few more intervals, nothing else was counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded_reads(&app).await, [(guild, 3)]);
    app.kill();
}

/// With caching off there is nothing to warm: warming says so and ends.
#[tokio::test]
async fn with_caching_off_warming_has_nothing_to_do() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.caching = false;
    settings.warm_on_start = 3;
    let store = EventStore::connect(&env.database_url()).await.unwrap();
    store
        .record_guild_reads(
            chrono::Utc::now().timestamp_millis(),
            &[("1".parse().unwrap(), 5)],
        )
        .await
        .unwrap();
    let app = env.spawn_with(settings).await;
    assert_eq!(
        warmed_on_start(&app).await,
        json!({ "status": "done", "guildsAsked": 3, "guilds": 0, "warmed": 0, "failed": 0 })
    );
    app.stop().await;
}
