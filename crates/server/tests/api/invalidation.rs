//! SPEC 2.4: after any event, every analytics of its guild equals a fresh
//! computation, and the entries of other guilds survive.

use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};

pub use crate::helpers::event;
use crate::helpers::*;

/// The analytics among `kinds` that `app` serves differently from a fresh,
/// uncached computation.
pub async fn stale_analytics(
    app: &TestApp,
    guild: &GuildId,
    kinds: &[AnalyticsKind],
) -> Vec<AnalyticsKind> {
    let mut stale = Vec::new();
    for &kind in kinds {
        let served = json(app.analytics(kind.as_str(), guild).await).await;
        let fresh = app.store.analytics_now(kind, guild, None).await.unwrap();
        if served != fresh.to_json() {
            stale.push(kind);
        }
    }
    stale
}

pub async fn assert_all_fresh(app: &TestApp, guild: &GuildId, context: &str) {
    let stale = stale_analytics(app, guild, AnalyticsKind::ALL).await;
    assert!(stale.is_empty(), "{context}: served stale {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let (first, second) = (&guilds[0], &guilds[1]);
    // A lurker: an event by them changes lurkers, and ghosts/heatmap/shifts
    // for typing, clients for presence...
    let user = a_lurker(&app, first).await;

    for &kind in EventKind::ALL {
        for guild in [first, second] {
            warm(&app, guild).await;
        }
        let before: Vec<Value> = futures_all(&app, first).await;

        let response = app
            .post_events(kind.as_str(), event(kind, first, &user))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{kind}");

        let hits_before = cache_counter(&app, "hits").await;
        for &analytics in AnalyticsKind::ALL {
            let response = app.analytics(analytics.as_str(), second).await;
            assert_eq!(
                header(&response, "x-cache"),
                "hit",
                "{kind} emptied {analytics} of another guild"
            );
        }
        assert_eq!(
            cache_counter(&app, "hits").await - hits_before,
            6,
            "{kind}: stats count the other guild's hits"
        );

        let mut changed = 0;
        for (i, &analytics) in AnalyticsKind::ALL.iter().enumerate() {
            let response = app.analytics(analytics.as_str(), first).await;
            let invalidated = kind.invalidates().contains(&analytics);
            let expected_cache = if invalidated { "miss" } else { "hit" };
            assert_eq!(
                header(&response, "x-cache"),
                expected_cache,
                "{kind} -> {analytics}"
            );
            let served = json(response).await;
            let fresh = app
                .store
                .analytics_now(analytics, first, None)
                .await
                .unwrap()
                .to_json();
            assert_eq!(served, fresh, "{kind} left {analytics} stale");
            changed += usize::from(served != before[i]);
        }
        // The test only proves something if the event changed what it invalidates.
        assert_eq!(
            changed > 0,
            !kind.invalidates().is_empty(),
            "{kind}: {changed} analytics changed"
        );
    }
}

async fn futures_all(app: &TestApp, guild: &GuildId) -> Vec<Value> {
    let mut all = Vec::new();
    for &kind in AnalyticsKind::ALL {
        all.push(json(app.analytics(kind.as_str(), guild).await).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_publishes_the_invalidation() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let app = env.spawn().await;
    let redis = env.redis.as_ref().unwrap();
    // Subscribe with redis-cli and collect what it prints.
    let mut subscriber = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "SUBSCRIBE",
            "spywatcher:pubsub:cache:invalidated:42",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let guild = GuildId::parse("42").unwrap();
    app.post_events("messages", event(EventKind::Message, &guild, "7"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    subscriber.kill().unwrap();
    let output = subscriber.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let message: Value = text
        .lines()
        .find_map(|line| {
            serde_json::from_str(line)
                .ok()
                .filter(|v: &Value| v.is_object())
        })
        .unwrap_or_else(|| panic!("no message published: {text}"));
    assert_eq!(message["event"], "message");
    assert_eq!(message["guildId"], "42");
    assert!(message["timestamp"].is_string());
}
