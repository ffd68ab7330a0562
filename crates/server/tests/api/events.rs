use serde_json::json;

use crate::helpers::*;

fn message(guild: &str, user: &str) -> serde_json::Value {
    json!({ "guildId": guild, "channelId": "10", "channel": "general", "userId": user,
            "username": "ann", "content": "hello" })
}

/// Posts each kind of event, one and a batch of two, and counts what the
/// database holds; Redis takes every invalidation (on a cluster, each
/// acknowledged by the shard's replica), at once or, when a call outlasts
/// the tests' short timeout on a busy machine, from the journal soon after.
async fn every_event_kind_is_stored(db: Db, backend: Backend) {
    let env = TestEnv::on(db, backend).await;
    let app = env.spawn().await;
    for (kind, event) in [
        ("messages", message("1", "2")),
        (
            "typing",
            json!({ "guildId": "1", "channelId": "10", "channel": "general", "userId": "2", "username": "ann" }),
        ),
        (
            "presence",
            json!({ "guildId": "1", "userId": "2", "username": "ann", "clients": ["desktop", "web"] }),
        ),
        (
            "role-changes",
            json!({ "guildId": "1", "userId": "2", "username": "ann", "addedRoles": ["mod"] }),
        ),
        (
            "member-joins",
            json!({ "guildId": "1", "userId": "2", "username": "ann", "accountAgeDays": 12,
                                 "createdAt": "2026-01-02T03:04:05Z" }),
        ),
    ] {
        let one = app.post_events(kind, event.clone()).await;
        assert_eq!(one.status().as_u16(), 201, "{db:?} {backend:?} {kind}");
        assert_eq!(json(one).await, json!({ "stored": 1 }));
        let batch = app.post_events(kind, json!([event.clone(), event])).await;
        assert_eq!(
            json(batch).await,
            json!({ "stored": 2 }),
            "{db:?} {backend:?} {kind}"
        );
    }
    assert_eq!(
        app.store.event_count().await.unwrap(),
        15,
        "{db:?} {backend:?}"
    );
    wait_for_applied_journal(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_is_stored_on_both_databases() {
    for db in BOTH_DATABASES {
        every_event_kind_is_stored(db, Backend::Redis).await;
    }
}

/// Each ingestion invalidates on the cluster's masters: on SQLite only, the
/// database takes no part in that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_is_stored_with_a_cluster() {
    every_event_kind_is_stored(Db::Sqlite, Backend::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_event_in_a_batch_stores_nothing_and_is_named() {
    for db in BOTH_DATABASES {
        let env = TestEnv::new(db, false).await;
        let app = env.spawn().await;
        let mut bad = message("1", "3");
        bad["userId"] = json!("not-a-snowflake");
        let response = app
            .post_events(
                "messages",
                json!([message("1", "2"), message("1", "2"), bad]),
            )
            .await;
        let body = assert_error(response, 422).await;
        assert_eq!(body["index"], 2, "{body}");
        assert_eq!(body["field"], "userId", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("event 2"),
            "{body}"
        );
        assert_eq!(
            app.store.event_count().await.unwrap(),
            0,
            "{db:?}: nothing half-stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_requests_get_4xx_json() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.body_limit_bytes = 4096;
    let app = env.spawn_with(settings).await;
    let post_raw = |kind: &str, body: String| {
        app.request(
            reqwest::Method::POST,
            &format!("/api/events/{kind}"),
            Some(INGEST),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
    };
    assert_error(
        post_raw("messages", "{\"guildId\": ".into()).await.unwrap(),
        400,
    )
    .await;
    assert_error(post_raw("messages", "".into()).await.unwrap(), 400).await;
    assert_error(post_raw("messages", "42".into()).await.unwrap(), 422).await;
    assert_error(post_raw("messages", "[]".into()).await.unwrap(), 422).await;
    assert_error(post_raw("reactions", "{}".into()).await.unwrap(), 404).await;
    let huge = json!({ "content": "x".repeat(10_000) }).to_string();
    let body = assert_error(post_raw("messages", huge).await.unwrap(), 413).await;
    assert_eq!(body["error"], "payload_too_large");
    let mut wrong_type = message("1", "2");
    wrong_type["content"] = json!(5);
    let body = assert_error(app.post_events("messages", wrong_type).await, 422).await;
    assert_eq!(body["field"], "content");
    let mut bad_client =
        json!({ "guildId": "1", "userId": "2", "username": "ann", "clients": ["fridge"] });
    let body = assert_error(app.post_events("presence", bad_client.take()).await, 422).await;
    assert_eq!(body["field"], "clients");
    assert_eq!(app.store.event_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_acknowledged_event() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let store = app.store.clone();
    let batch = json!(
        (0..200)
            .map(|i| message("1", &i.to_string()))
            .collect::<Vec<_>>()
    );
    let requests: Vec<_> = (0..20)
        .map(|_| {
            app.request(reqwest::Method::POST, "/api/events/messages", Some(INGEST))
                .json(&batch)
                .send()
        })
        .collect();
    let responses = tokio::spawn(futures::future::join_all(requests));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.stop().await;
    let mut acknowledged = 0;
    // A request the server never accepted fails to connect: not acknowledged.
    for response in responses.await.unwrap().into_iter().flatten() {
        assert_eq!(response.status().as_u16(), 201);
        acknowledged += json(response).await["stored"].as_u64().unwrap();
    }
    assert!(acknowledged > 0, "some requests were in flight");
    assert_eq!(store.event_count().await.unwrap(), acknowledged);
}
