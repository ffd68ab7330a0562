//! Redis stopped under a running service (issue 4, point 3).

use std::time::{Duration, Instant};

use spywatcher_analytics::{AnalyticsKind, EventKind};

use crate::helpers::*;
use crate::invalidation::{assert_all_fresh, event};

async fn status(app: &TestApp) -> (String, String) {
    let stats = cache_stats(app).await;
    let ready = json(app.get("/health/ready", None).await).await;
    (
        stats["status"].as_str().unwrap().to_string(),
        ready["status"].as_str().unwrap().to_string(),
    )
}

/// The one journal entry of the test is applied, and still there.
async fn assert_applied_and_kept(app: &TestApp) {
    let kept = app.store.invalidations_since(i64::MIN).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].applied, "{kept:?}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_keep_answering_while_redis_is_down_and_nothing_stale_after() {
    let mut env = TestEnv::new(Db::Sqlite, true).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let guild = &guilds[0];
    warm(&app, guild).await;
    assert_eq!(
        header(&app.analytics("ghosts", guild).await, "x-cache"),
        "hit"
    );
    let user = a_lurker(&app, guild).await;

    let redis = env.redis.as_mut().unwrap();
    redis.save();
    redis.kill();

    // Every request answers: from L1 what it holds (kept during the outage,
    // fed by the journal), from the database the rest.
    for &kind in AnalyticsKind::ALL {
        let response = app.analytics(kind.as_str(), guild).await;
        assert_eq!(response.status().as_u16(), 200, "{kind}");
        assert_eq!(header(&response, "x-cache"), "hit", "{kind} from L1");
        let since = chrono::Utc::now().timestamp_millis() - 86_400_000;
        let uncached = app
            .get(
                &format!(
                    "/api/analytics/{kind}?guildId={}&since={since}",
                    guild.as_str()
                ),
                Some(API),
            )
            .await;
        assert_eq!(uncached.status().as_u16(), 200, "{kind} since {since}");
    }
    assert_eq!(status(&app).await, ("degraded".into(), "degraded".into()));

    // What the outage adds to a request: compare with the database's own time.
    let mut served = Vec::new();
    let mut computed = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        assert_eq!(app.analytics("heatmap", guild).await.status().as_u16(), 200);
        served.push(started.elapsed());
        let started = Instant::now();
        app.store
            .analytics_now(AnalyticsKind::Heatmap, guild, None)
            .await
            .unwrap();
        computed.push(started.elapsed());
    }
    let (served, computed) = (median(served), median(computed));
    println!("outage: request {served:?} vs database alone {computed:?}");
    assert!(
        served < computed + Duration::from_millis(15),
        "a request during the outage took {served:?}, the query alone {computed:?}"
    );

    // An event during the outage: stored, its invalidation journaled.
    let response = app
        .post_events("typing", event(EventKind::Typing, guild, &user))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(app.store.pending_invalidations().await.unwrap().len(), 1);

    // Redis returns with the data it had, stale entries included (unless
    // the service was quicker than this check: it replays the journal into
    // the restarted server, then the sweeper deletes what that made stale).
    redis.restart();
    let stale_entry = format!("spywatcher:analytics:ghosts:{}:all", guild.as_str());
    let came_back = redis.cli(&["EXISTS", &stale_entry]) == "1";
    assert!(
        came_back || app.store.pending_invalidations().await.unwrap().is_empty(),
        "the snapshot held the stale entry"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&app).await.0 != "healthy" {
        assert!(Instant::now() < deadline, "caching did not resume");
        assert_all_fresh(&app, guild, "while Redis comes back").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&app).await.1, "ready");
    assert!(app.store.pending_invalidations().await.unwrap().is_empty());
    // Applied, the entry stays for the retention window (SPEC 1.2.11).
    assert_applied_and_kept(&app).await;
    assert_all_fresh(&app, guild, "after Redis came back").await;
    // Caching resumed, in the same process.
    assert_eq!(
        header(&app.analytics("ghosts", guild).await, "x-cache"),
        "hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_journal_carries_an_invalidation_past_the_death_of_its_instance() {
    let mut env = TestEnv::new(Db::Sqlite, true).await;
    let a = env.spawn().await;
    let b = env.spawn().await;
    let guilds = seed(&a.store).await;
    let guild = &guilds[0];
    warm(&a, guild).await;
    let user = a_lurker(&a, guild).await;

    let redis = env.redis.as_mut().unwrap();
    redis.save();
    redis.kill();
    let response = a
        .post_events("typing", event(EventKind::Typing, guild, &user))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    // A dies before Redis returns.
    a.kill();
    redis.restart();

    // B applies the journal within its interval...
    wait_for_applied_journal(&b).await;
    // ...and serves nothing stale.
    assert_all_fresh(&b, guild, "instance B").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_also_works_on_postgresql() {
    let mut env = TestEnv::new(Db::Postgres, true).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let guild = &guilds[0];
    app.analytics("roles", guild).await;
    let redis = env.redis.as_mut().unwrap();
    redis.save();
    redis.kill();
    let response = app
        .post_events("role-changes", event(EventKind::RoleChange, guild, "5"))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(app.store.pending_invalidations().await.unwrap().len(), 1);
    redis.restart();
    wait_for_applied_journal(&app).await;
    assert_applied_and_kept(&app).await;
    assert_all_fresh(&app, guild, "PostgreSQL").await;
}
