use spywatcher_analytics::AnalyticsKind;

use crate::helpers::*;

/// Each analytics: a miss computed as the database would, then a hit with
/// the same body and ETag, then 304 for that ETag.
async fn every_analytics_is_served_through_the_cache(db: Db, backend: Backend) {
    let env = TestEnv::on(db, backend).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let guild = &guilds[0];
    for &kind in AnalyticsKind::ALL {
        let first = app.analytics(kind.as_str(), guild).await;
        assert_eq!(first.status().as_u16(), 200, "{db:?} {backend:?} {kind}");
        assert_eq!(header(&first, "x-cache"), "miss");
        let etag = header(&first, "etag");
        assert!(etag.starts_with('"') && etag.len() > 2);
        let rows = json(first).await;
        let expected = app
            .store
            .analytics_now(kind, guild, None)
            .await
            .unwrap()
            .to_json();
        assert_eq!(rows, expected, "{db:?} {backend:?} {kind}");
        assert!(
            !rows.as_array().unwrap().is_empty(),
            "{db:?} {kind}: seed data gives rows"
        );

        let second = app.analytics(kind.as_str(), guild).await;
        assert_eq!(
            header(&second, "x-cache"),
            "hit",
            "{db:?} {backend:?} {kind}"
        );
        assert_eq!(header(&second, "etag"), etag);
        assert_eq!(json(second).await, rows);

        let not_modified = app
            .request(
                reqwest::Method::GET,
                &format!("/api/analytics/{kind}?guildId={}", guild.as_str()),
                Some(API),
            )
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(not_modified.status().as_u16(), 304);
        assert_eq!(header(&not_modified, "etag"), etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_analytics_is_served_through_the_cache_on_both_databases() {
    for db in BOTH_DATABASES {
        every_analytics_is_served_through_the_cache(db, Backend::Redis).await;
    }
}

/// On SQLite only: what the cluster changes is where entries live, not
/// what the database computes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_analytics_is_served_through_the_cache_on_a_cluster() {
    every_analytics_is_served_through_the_cache(Db::Sqlite, Backend::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_and_the_post_alias() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let guild = guilds[0].as_str();
    let since_ms = (chrono::Utc::now() - chrono::Duration::days(3)).timestamp_millis();
    let rfc3339 = chrono::DateTime::from_timestamp_millis(since_ms)
        .unwrap()
        .to_rfc3339();
    let by_ms = json(
        app.get(
            &format!("/api/analytics/heatmap?guildId={guild}&since={since_ms}"),
            Some(API),
        )
        .await,
    )
    .await;
    let by_rfc = app
        .request(reqwest::Method::GET, "/api/analytics/heatmap", Some(API))
        .query(&[("guildId", guild), ("since", rfc3339.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&by_rfc, "x-cache"), "hit", "same since, same key");
    assert_eq!(json(by_rfc).await, by_ms);
    let all = json(
        app.get(
            &format!("/api/analytics/heatmap?guildId={guild}"),
            Some(API),
        )
        .await,
    )
    .await;
    assert_ne!(all, by_ms, "since narrows the result");

    let posted = app
        .request(reqwest::Method::POST, "/api/analytics/heatmap", Some(API))
        .json(&serde_json::json!({ "guildId": guild, "since": since_ms }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    assert_eq!(json(posted).await, by_ms);
    let posted_query = app
        .request(
            reqwest::Method::POST,
            &format!("/api/analytics/heatmap?guildId={guild}"),
            Some(API),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json(posted_query).await, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_analytics_requests_get_4xx_json() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    for (path, status, mentions) in [
        ("/api/analytics/ghosts", 400, "guildId"),
        ("/api/analytics/ghosts?guildId=", 400, "guildId"),
        ("/api/analytics/ghosts?guildId=abc", 400, "guildId"),
        (
            "/api/analytics/ghosts?guildId=123456789012345678901",
            400,
            "guildId",
        ),
        ("/api/analytics/ghosts?guildId=-1", 400, "guildId"),
        (
            "/api/analytics/ghosts?guildId=1&since=yesterday",
            400,
            "since",
        ),
        (
            "/api/analytics/ghosts?guildId=1&since=2024-13-45T00:00:00Z",
            400,
            "since",
        ),
        ("/api/analytics/vampires?guildId=1", 404, "vampires"),
    ] {
        let body = assert_error(app.get(path, Some(API)).await, status).await;
        assert!(
            body["message"].as_str().unwrap().contains(mentions),
            "{path}: {body}"
        );
    }
    let not_json = app
        .request(reqwest::Method::POST, "/api/analytics/ghosts", Some(API))
        .header("content-type", "application/json")
        .body("{guildId: 1")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_is_cached() {
    for backend in REDIS_BACKENDS {
        let env = TestEnv::on(Db::Sqlite, backend).await;
        let app = env.spawn().await;
        let first = app.get("/api/analytics/roles?guildId=999", Some(API)).await;
        assert_eq!(json(first).await, serde_json::json!([]));
        let second = app.get("/api/analytics/roles?guildId=999", Some(API)).await;
        assert_eq!(header(&second, "x-cache"), "hit", "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_encoded_type_or_parameter_is_decoded() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let guilds = seed(&app.store).await;
    let guild = guilds[0].as_str();
    let plain = json(app.analytics("ghosts", &guilds[0]).await).await;
    let digits: String = guild
        .chars()
        .map(|c| format!("%{:02X}", c as u32))
        .collect();
    for path in [
        format!("/api/analytics/gh%6Fsts?guildId={guild}"),
        format!("/api/analytics/ghosts?guildId={digits}"),
        format!("/api/analytics/ghosts?since=&guildId={guild}"),
    ] {
        let response = app.get(&path, Some(API)).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(json(response).await, plain, "{path}");
    }
}

/// `CACHE_ENABLED=false`, the baseline a benchmark measures the cache
/// against: every read is computed by the database (`X-Cache: miss`, the
/// cache untouched, a query counted each time), events are stored and seen
/// by the next read; with the cache, the same reads cost one query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_caching_off_every_read_is_a_database_query() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.caching = false;
    let app = env.spawn_with(settings).await;
    let guilds = seed(&app.store).await;
    let guild = &guilds[0];
    let queries = "spywatcher_db_queries_total{operation=\"analytics\"}";
    let before = metric(&app, queries).await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let response = app.analytics("lurkers", guild).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(header(&response, "x-cache"), "miss");
        assert!(header(&response, "etag").starts_with('"'));
        bodies.push(json(response).await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert!(metric(&app, queries).await >= before + 3.0);
    let stats = cache_stats(&app).await["stats"].clone();
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(0), Some(0)),
        "the cache is not used: {stats}"
    );

    let user = a_lurker(&app, guild).await;
    let stored = app
        .post_events(
            "messages",
            event(spywatcher_analytics::EventKind::Message, guild, &user),
        )
        .await;
    assert_eq!(stored.status().as_u16(), 201);
    let after = json(app.analytics("lurkers", guild).await).await;
    assert_ne!(after, bodies[0], "the next read sees the event");
    assert!(
        !after.to_string().contains(&user),
        "{user} posted: no longer a lurker"
    );
    app.stop().await;

    let cached = env.spawn().await;
    let first = cached.analytics("lurkers", guild).await;
    assert_eq!(header(&first, "x-cache"), "miss");
    assert_eq!(
        header(&cached.analytics("lurkers", guild).await, "x-cache"),
        "hit"
    );
}
