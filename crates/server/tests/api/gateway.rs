//! The Discord gateway ingester in the real service (SPEC 2.5), against
//! the fake gateway of the test kit: events become rows through the same
//! path as HTTP ingestion, a reconnect resumes, a slow database holds the
//! gateway back without losing anything.

use std::time::Duration;

use serde_json::Value;
use spywatcher::config::DiscordSettings;
use spywatcher_analytics::{AnalyticsKind, GuildId};
use spywatcher_gateway::ingester::IdentifyLimit;
use spywatcher_testkit::gateway::{FakeGateway, payload};
use sqlx::Connection;

use crate::helpers::*;

const CHANNEL: u64 = 810_000_000_000_000_001;
const TYPIST: u64 = 830_000_000_000_000_001;
/// Only a broken service makes a test wait this long.
const PATIENCE: Duration = Duration::from_secs(30);

fn with_gateway(
    env: &TestEnv,
    gateway: &FakeGateway,
    buffer_capacity: usize,
) -> spywatcher::config::Settings {
    let mut settings = env.settings();
    settings.discord = Some(DiscordSettings {
        token: "test-bot-token".into(),
        shard: (0, 1),
        gateway_url: Some(gateway.url()),
        buffer_capacity,
        batch_max: 8.min(buffer_capacity),
        batch_wait: Duration::from_millis(5),
        identify_limit: IdentifyLimit::Unlimited,
    });
    settings
}

/// `/health/ready`'s gateway field.
async fn gateway_status(app: &TestApp) -> Value {
    json(app.get("/health/ready", None).await).await["gateway"].clone()
}

/// Waits until the gateway field satisfies `condition`.
async fn wait_for_gateway(app: &TestApp, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let status = gateway_status(app).await;
        if condition(&status) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_stored(app: &TestApp, n: u64) -> Value {
    wait_for_gateway(app, &format!("{n} events stored"), |s| {
        s["eventsStored"].as_u64() >= Some(n)
    })
    .await
}

fn user_id(row: &Value) -> Option<u64> {
    row["userId"].as_str()?.parse().ok()
}

fn raw(guild: &GuildId) -> u64 {
    guild.as_str().parse().expect("a numeric guild id")
}

fn message(n: u64, guild: u64) -> Value {
    payload::message_create(
        1_000 + n,
        guild,
        CHANNEL,
        payload::user(TYPIST, "typist"),
        &format!("message {n}"),
        "2026-11-29T10:00:00.000000+00:00",
    )
}

#[tokio::test]
async fn dispatched_events_become_rows_and_invalidate_only_what_they_change() {
    for backend in [Backend::Embedded, Backend::Redis] {
        let env = TestEnv::on(Db::Sqlite, backend).await;
        let gateway = FakeGateway::start().await;
        let app = env.spawn_with(with_gateway(&env, &gateway, 1_000)).await;
        let guilds = seed(&app.store).await;
        let (ours, theirs) = (&guilds[0], &guilds[1]);
        assert!(
            gateway.wait_for(PATIENCE, |s| s.identifies == 1).await,
            "no IDENTIFY"
        );
        let status = wait_for_gateway(&app, "ready", |s| s["status"] == "ready").await;
        assert_eq!(status["shard"], "0/1");
        gateway.dispatch(
            "GUILD_CREATE",
            payload::guild_create(
                raw(ours),
                "ours",
                vec![payload::channel(raw(ours), CHANNEL, "general")],
                vec![],
                vec![],
            ),
        );
        for guild in [ours, theirs] {
            warm(&app, guild).await;
        }
        let before = app.store.event_count().await.unwrap();

        let member = payload::member(
            payload::user(TYPIST, "typist"),
            &[],
            "2026-01-01T00:00:00.000000+00:00",
        );
        let now = chrono::Utc::now().timestamp() as u64;
        gateway.dispatch(
            "TYPING_START",
            payload::typing_start(raw(ours), CHANNEL, TYPIST, Some(member), now),
        );
        wait_for_stored(&app, 1).await;
        assert_eq!(
            app.store.event_count().await.unwrap(),
            before + 1,
            "{backend:?}"
        );

        // SPEC 2.4's row for typing: ghosts, lurkers, heatmap, shifts of
        // its guild; nothing else.
        for &kind in AnalyticsKind::ALL {
            let response = app.analytics(kind.as_str(), ours).await;
            let expected = if [
                AnalyticsKind::Ghosts,
                AnalyticsKind::Lurkers,
                AnalyticsKind::Heatmap,
                AnalyticsKind::Shifts,
            ]
            .contains(&kind)
            {
                "miss"
            } else {
                "hit"
            };
            assert_eq!(
                header(&response, "x-cache"),
                expected,
                "{backend:?} {kind} of the typing's guild"
            );
            let served = json(response).await;
            let fresh = app
                .store
                .analytics_now(kind, ours, None)
                .await
                .unwrap()
                .to_json();
            assert_eq!(served, fresh, "{backend:?} {kind}");
            let theirs_response = app.analytics(kind.as_str(), theirs).await;
            assert_eq!(
                header(&theirs_response, "x-cache"),
                "hit",
                "{backend:?} {kind} of another guild"
            );
        }
        let heatmap = json(app.analytics("heatmap", ours).await).await;
        let row = heatmap
            .as_array()
            .unwrap()
            .iter()
            .find(|r| user_id(r) == Some(TYPIST))
            .expect("the typist in the heatmap");
        assert_eq!(
            (&row["username"], &row["channel"]),
            (&Value::from("typist"), &Value::from("general"))
        );

        // The other rows of SPEC 2.5, one of each.
        gateway.dispatch("MESSAGE_CREATE", message(1, raw(ours)));
        gateway.dispatch(
            "PRESENCE_UPDATE",
            payload::presence_update(
                raw(ours),
                payload::user_id_only(TYPIST),
                "online",
                &["desktop"],
            ),
        );
        gateway.dispatch(
            "GUILD_MEMBER_ADD",
            payload::guild_member_add(
                raw(ours),
                payload::member(
                    payload::user(TYPIST + 1, "newcomer"),
                    &[],
                    "2026-11-29T10:00:00.000000+00:00",
                ),
            ),
        );
        gateway.dispatch(
            "GUILD_MEMBER_UPDATE",
            payload::guild_member_update(raw(ours), payload::user(TYPIST + 1, "newcomer"), &[42]),
        );
        // A bot's message and an offline presence: nothing.
        gateway.dispatch(
            "MESSAGE_CREATE",
            payload::message_create(
                2,
                raw(ours),
                CHANNEL,
                payload::bot(7, "robot"),
                "beep",
                "2026-11-29T10:00:00.000000+00:00",
            ),
        );
        gateway.dispatch(
            "PRESENCE_UPDATE",
            payload::presence_update(raw(ours), payload::user_id_only(TYPIST), "offline", &[]),
        );
        wait_for_stored(&app, 5).await;
        let store = app.store.clone();
        app.stop().await;
        assert_eq!(
            store.event_count().await.unwrap(),
            before + 5,
            "{backend:?}"
        );
        let roles = store
            .analytics_now(AnalyticsKind::Roles, ours, None)
            .await
            .unwrap()
            .to_json();
        assert!(
            roles
                .as_array()
                .unwrap()
                .iter()
                .any(|r| user_id(r) == Some(TYPIST + 1)),
            "the role change is stored: {roles}"
        );
    }
}

#[tokio::test]
async fn a_forced_reconnect_resumes_and_nothing_is_lost_or_stored_twice() {
    let env = TestEnv::on(Db::Sqlite, Backend::Embedded).await;
    let gateway = FakeGateway::start().await;
    let app = env.spawn_with(with_gateway(&env, &gateway, 1_000)).await;
    assert!(
        gateway.wait_for(PATIENCE, |s| s.identifies == 1).await,
        "no IDENTIFY"
    );
    let guild = 800_000_000_000_000_001;
    for n in 0..100 {
        gateway.dispatch("MESSAGE_CREATE", message(n, guild));
    }
    gateway.reconnect();
    for n in 100..200 {
        gateway.dispatch("MESSAGE_CREATE", message(n, guild));
    }
    assert!(
        gateway.wait_for(PATIENCE, |s| s.resumes == 1).await,
        "no RESUME"
    );
    for n in 200..300 {
        gateway.dispatch("MESSAGE_CREATE", message(n, guild));
    }
    let status = wait_for_stored(&app, 300).await;
    assert_eq!(status["reconnects"], 1);
    assert_eq!(status["status"], "ready");
    let reconnects = metric(&app, "spywatcher_gateway_reconnects_total").await;
    assert!(reconnects >= 1.0, "{reconnects}");
    // The shutdown stores everything read: a duplicate would be counted.
    let store = app.store.clone();
    app.stop().await;
    assert_eq!(store.event_count().await.unwrap(), 300);
    let guild_id: GuildId = guild.to_string().parse().unwrap();
    let ghosts = store
        .analytics_now(AnalyticsKind::Shifts, &guild_id, None)
        .await
        .unwrap();
    assert!(!ghosts.to_json().as_array().unwrap().is_empty());
    assert_eq!(gateway.identifies().len(), 1, "RESUME, not a new IDENTIFY");
    assert_eq!(gateway.resumes().len(), 1);
}

#[tokio::test]
async fn a_held_write_lock_fills_the_buffer_then_everything_drains() {
    let env = TestEnv::on(Db::Sqlite, Backend::Embedded).await;
    let gateway = FakeGateway::start().await;
    let capacity = 16;
    let app = env.spawn_with(with_gateway(&env, &gateway, capacity)).await;
    assert!(
        gateway.wait_for(PATIENCE, |s| s.identifies == 1).await,
        "no IDENTIFY"
    );
    wait_for_gateway(&app, "ready", |s| s["status"] == "ready").await;

    // A second connection holds SQLite's write lock: every commit waits.
    let mut locker = sqlx::SqliteConnection::connect(&env.database_url())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let guild = 800_000_000_000_000_001;
    let total = 300;
    for n in 0..total {
        gateway.dispatch("MESSAGE_CREATE", message(n, guild));
    }
    let full = wait_for_gateway(&app, "a full buffer", |s| s["buffered"] == capacity).await;
    assert_eq!(full["eventsStored"], 0);
    assert_eq!(full["bufferCapacity"], capacity);
    // Reading has stopped: one batch in the consumer's hands (8), the
    // buffer, and the event waiting for room.
    let read = full["eventsRead"].as_u64().unwrap();
    assert!(read <= 8 + capacity as u64 + 1, "{full}");
    // The gauge is the process's (other tests set it too): present is all
    // that can be asserted here.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("spywatcher_gateway_buffer_depth"),
        "{metrics}"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    let drained = wait_for_stored(&app, total).await;
    assert_eq!(drained["eventsRead"], total);
    let store = app.store.clone();
    app.stop().await;
    assert_eq!(store.event_count().await.unwrap(), total);
    assert_eq!(
        gateway.identifies().len() + gateway.resumes().len(),
        1,
        "the connection held"
    );
}
