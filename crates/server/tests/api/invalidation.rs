//! SPEC 2.4: after any event, every analytics of its guild equals a fresh
//! computation, and the entries of other guilds survive; on a redis-server
//! and on a Redis Cluster (issue 10), whose masters each hold some of a
//! guild's entries and of their tags' markers.

use serde_json::Value;
use spywatcher::service::keys::{entry_key, entry_tags};
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

/// On a cluster: the masters holding `guild`'s entries and their tags'
/// markers, checked to be all three, with some entry apart from some of its
/// markers, so the test crosses slots and nodes.
fn assert_spread_over_the_masters(env: &TestEnv, guild: &GuildId) {
    let Some(cluster) = &env.cluster else { return };
    let mut masters = std::collections::BTreeSet::new();
    let mut apart = 0;
    for &kind in AnalyticsKind::ALL {
        let entry = cluster.master_of(&format!("spywatcher:{}", entry_key(kind, guild, None)));
        for tag in entry_tags(kind, guild) {
            let marker = cluster.master_of(&format!("spywatcher:~t:{{{tag}}}"));
            apart += usize::from(marker != entry);
            masters.insert(marker);
        }
        masters.insert(entry);
    }
    assert_eq!(masters.len(), 3, "guild {guild:?} uses masters {masters:?}");
    assert!(
        apart > 0,
        "every marker of guild {guild:?} is beside its entry"
    );
}

/// Once through the instance's L1 tier, once with L1 off so that every read
/// goes to Redis (on a cluster: entries and markers on several masters).
async fn each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes(
    backend: Backend,
) {
    let env = TestEnv::on(Db::Sqlite, backend).await;
    let default_l1 = env.settings().l1_memory_bytes;
    assert!(default_l1 > 0, "L1 is on by default");
    let mut guilds = Vec::new();
    for l1_bytes in [default_l1, 0] {
        let mut settings = env.settings();
        settings.l1_memory_bytes = l1_bytes;
        let app = env.spawn_with(settings).await;
        if guilds.is_empty() {
            guilds = seed(&app.store).await;
            assert_spread_over_the_masters(&env, &guilds[0]);
        }
        let context = format!("{backend:?}, L1 of {l1_bytes} bytes");
        each_event_invalidates_its_guild(&app, &guilds[0], &guilds[1], &context).await;
    }
}

async fn each_event_invalidates_its_guild(
    app: &TestApp,
    first: &GuildId,
    second: &GuildId,
    context: &str,
) {
    // A lurker: an event by them changes lurkers, and ghosts/heatmap/shifts
    // for typing, clients for presence... (a new one each time: after a
    // message, a lurker is one no more).
    let user = a_lurker(app, first).await;

    for &kind in EventKind::ALL {
        for guild in [first, second] {
            warm(app, guild).await;
        }
        let before: Vec<Value> = futures_all(app, first).await;

        let response = app
            .post_events(kind.as_str(), event(kind, first, &user))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{context}: {kind}");

        let hits_before = cache_counter(app, "hits").await;
        for &analytics in AnalyticsKind::ALL {
            let response = app.analytics(analytics.as_str(), second).await;
            assert_eq!(
                header(&response, "x-cache"),
                "hit",
                "{context}: {kind} emptied {analytics} of another guild"
            );
        }
        assert_eq!(
            cache_counter(app, "hits").await - hits_before,
            6,
            "{context}: {kind}: stats count the other guild's hits"
        );

        let mut changed = 0;
        for (i, &analytics) in AnalyticsKind::ALL.iter().enumerate() {
            let response = app.analytics(analytics.as_str(), first).await;
            let invalidated = kind.invalidates().contains(&analytics);
            let expected_cache = if invalidated { "miss" } else { "hit" };
            assert_eq!(
                header(&response, "x-cache"),
                expected_cache,
                "{context}: {kind} -> {analytics}"
            );
            let served = json(response).await;
            let fresh = app
                .store
                .analytics_now(analytics, first, None)
                .await
                .unwrap()
                .to_json();
            assert_eq!(served, fresh, "{context}: {kind} left {analytics} stale");
            changed += usize::from(served != before[i]);
        }
        // The test only proves something if the event changed what it invalidates.
        assert_eq!(
            changed > 0,
            !kind.invalidates().is_empty(),
            "{context}: {kind}: {changed} analytics changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes_on_redis() {
    each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes_on_a_cluster() {
    each_event_invalidates_exactly_the_analytics_of_its_guild_that_it_changes(Backend::Cluster)
        .await;
}

async fn futures_all(app: &TestApp, guild: &GuildId) -> Vec<Value> {
    let mut all = Vec::new();
    for &kind in AnalyticsKind::ALL {
        all.push(json(app.analytics(kind.as_str(), guild).await).await);
    }
    all
}

async fn ingestion_publishes_the_invalidation(backend: Backend) {
    let env = TestEnv::on(Db::Sqlite, backend).await;
    let app = env.spawn().await;
    // On a cluster, a subscriber on the last node: the message crosses the
    // cluster bus from whichever node the service published on.
    let port = match (&env.redis, &env.cluster) {
        (Some(redis), _) => redis.port(),
        (_, Some(cluster)) => cluster.node(cluster.nodes().len() - 1).port(),
        _ => unreachable!("a Redis set-up"),
    };
    // Subscribe with redis-cli and collect what it prints.
    let mut subscriber = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
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
        .unwrap_or_else(|| panic!("{backend:?}: no message published: {text}"));
    assert_eq!(message["event"], "message");
    assert_eq!(message["guildId"], "42");
    assert!(message["timestamp"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_publishes_the_invalidation_on_redis() {
    ingestion_publishes_the_invalidation(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_publishes_the_invalidation_on_a_cluster() {
    ingestion_publishes_the_invalidation(Backend::Cluster).await;
}
