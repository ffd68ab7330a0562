//! Several instances on one Redis (issue 5): L1 coherence, a Redis restart,
//! and one database query for a burst of cold requests on both instances;
//! L1 coherence and the burst on a Redis Cluster too (issue 10; a master
//! lost under two instances is `failover.rs`).

use std::time::{Duration, Instant};

use spywatcher_analytics::{AnalyticsKind, EventKind};

use crate::helpers::*;
use crate::invalidation::{assert_all_fresh, event, stale_analytics};

async fn an_event_on_one_instance_reaches_the_other_instances_l1(backend: Backend) {
    let env = TestEnv::on(Db::Sqlite, backend).await;
    let a = env.spawn().await;
    let b = env.spawn().await;
    let guilds = seed(&a.store).await;
    let guild = &guilds[0];
    let user = a_lurker(&b, guild).await;
    for &kind in EventKind::ALL {
        for &analytics in AnalyticsKind::ALL {
            b.analytics(analytics.as_str(), guild).await;
            let again = b.analytics(analytics.as_str(), guild).await;
            assert_eq!(header(&again, "x-cache"), "hit");
        }
        let response = a
            .post_events(kind.as_str(), event(kind, guild, &user))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{backend:?} {kind}");
        // Once the message has arrived, B serves nothing stale from its L1.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let stale = stale_analytics(&b, guild, kind.invalidates()).await;
            if stale.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend:?} {kind}: B still serves stale {stale:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_all_fresh(&b, guild, &format!("{backend:?}: B after {kind}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_one_instance_reaches_the_other_instances_l1_on_redis() {
    an_event_on_one_instance_reaches_the_other_instances_l1(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_one_instance_reaches_the_other_instances_l1_on_a_cluster() {
    an_event_on_one_instance_reaches_the_other_instances_l1(Backend::Cluster).await;
}

/// Standalone only: a cluster's counterpart, a master lost and its replica
/// promoted, is `failover.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_leaves_no_stale_value_on_either_instance() {
    let mut env = TestEnv::new(Db::Sqlite, true).await;
    let a = env.spawn().await;
    let b = env.spawn().await;
    let guilds = seed(&a.store).await;
    let guild = &guilds[0];
    for app in [&a, &b] {
        warm(app, guild).await;
    }
    let redis = env.redis.as_mut().unwrap();
    redis.save();
    redis.restart();
    // An event right after the restart: its invalidation must reach both.
    let user = a_lurker(&a, guild).await;
    let response = a
        .post_events("typing", event(EventKind::Typing, guild, &user))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stale = stale_analytics(&a, guild, AnalyticsKind::ALL).await;
        stale.extend(stale_analytics(&b, guild, AnalyticsKind::ALL).await);
        if stale.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stale analytics after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_fresh(&a, guild, "A").await;
    assert_all_fresh(&b, guild, "B").await;
}

async fn five_hundred_cold_requests_on_each_of_two_instances_run_one_query(backend: Backend) {
    let env = TestEnv::on(Db::Sqlite, backend).await;
    // Not an outage test: a debug build under a burst of 1,000 requests on
    // two cores can take longer than the outage tests' 100 ms budget.
    let mut settings = env.settings();
    settings.cache_op_timeout = Duration::from_secs(2);
    let a = env.spawn_with(settings.clone()).await;
    let b = env.spawn_with(settings).await;
    let guilds = seed(&a.store).await;
    let guild = guilds[0].clone();
    let started = Instant::now();
    a.store
        .analytics_now(AnalyticsKind::Lurkers, &guild, None)
        .await
        .unwrap();
    let query_time = started.elapsed();
    let runs_before = cache_counter(&a, "loaderRuns").await + cache_counter(&b, "loaderRuns").await;
    // Open the 1,000 connections first, so the burst measures waiting for
    // the value, not TCP set-up.
    let warm = (0..1000).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.get("/health/live", None)
    });
    futures::future::join_all(warm).await;

    let requests = (0..1000).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let request = app
            .request(
                reqwest::Method::GET,
                &format!("/api/analytics/lurkers?guildId={}", guild.as_str()),
                Some(API),
            )
            .send();
        async move {
            let sent = Instant::now();
            let response = request.await.expect("response");
            assert_eq!(response.status().as_u16(), 200);
            sent.elapsed()
        }
    });
    let mut waits = futures::future::join_all(requests).await;
    waits.sort();
    let runs =
        cache_counter(&a, "loaderRuns").await + cache_counter(&b, "loaderRuns").await - runs_before;
    let p99 = waits[waits.len() * 99 / 100];
    println!(
        "{backend:?}: 1000 cold requests over 2 instances: {runs} database query, query alone {query_time:?}, callers' p50 {:?} p99 {p99:?}",
        waits[waits.len() / 2]
    );
    let errors = cache_stats(&a).await["stats"]["errors"].clone();
    assert_eq!(
        runs, 1,
        "{backend:?}: the database query ran {runs} times (cache errors on A: {errors})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_cold_requests_on_each_of_two_instances_run_one_query_on_redis() {
    five_hundred_cold_requests_on_each_of_two_instances_run_one_query(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_cold_requests_on_each_of_two_instances_run_one_query_on_a_cluster() {
    five_hundred_cold_requests_on_each_of_two_instances_run_one_query(Backend::Cluster).await;
}
