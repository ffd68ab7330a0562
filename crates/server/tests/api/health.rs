use spywatcher_analytics::GuildId;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi_need_no_token() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let app = env.spawn().await;
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(json(live).await["status"], "ok");

    let ready = json(app.get("/health/ready", None).await).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"]["status"], "up");
    assert_eq!(ready["cache"]["status"], "healthy");

    app.get("/api/analytics/ghosts?guildId=1", Some(API)).await;
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("spywatcher_cache_misses"), "{text}");
    assert!(
        text.contains("spywatcher_analytics_requests_total"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    let doc = json(app.get("/api/openapi.json", None).await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/analytics/{type}", "get"),
        ("/api/analytics/{type}", "post"),
        ("/api/events/{kind}", "post"),
        ("/api/admin/monitoring/cache/stats", "get"),
        ("/api/admin/monitoring/cache/clear", "delete"),
        ("/api/admin/monitoring/cache/invalidate/{tag}", "delete"),
        ("/api/admin/monitoring/cache/warm", "post"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    assert_error(app.get("/nope", None).await, 404).await;
    let put = app
        .request(reqwest::Method::PUT, "/health/live", None)
        .send()
        .await
        .unwrap();
    assert_error(put, 405).await;
}

/// On a cluster, `/health/ready` lists every master; a cluster that does
/// not answer at start (every node frozen) neither holds up the start nor
/// the answers: the service serves from the database, reports the cache
/// degraded, and uses the cluster once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_frozen_at_start_holds_up_nothing_and_each_master_is_reported() {
    let env = TestEnv::on(Db::Sqlite, Backend::Cluster).await;
    let cluster = env.cluster.as_ref().expect("a cluster");
    let nodes = cluster.nodes().len();
    for i in 0..nodes {
        cluster.node(i).pause();
    }
    let started = std::time::Instant::now();
    let app = env.spawn().await;
    let start = started.elapsed();
    let live = app.get("/health/live", None).await;
    assert_eq!(live.status().as_u16(), 200);
    let guild = GuildId::parse("42").unwrap();
    let analytics = app.analytics("ghosts", &guild).await;
    assert_eq!(analytics.status().as_u16(), 200, "served from the database");
    let ready = json(app.get("/health/ready", None).await).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["cache"]["backend"], "redis-cluster");
    println!("started in {start:?} with every node frozen");
    assert!(
        start < std::time::Duration::from_secs(5),
        "start took {start:?}"
    );

    for i in 0..nodes {
        cluster.node(i).resume();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ready = loop {
        let ready = json(app.get("/health/ready", None).await).await;
        if ready["cache"]["status"] == "healthy" && ready["cache"]["masters"].is_array() {
            break ready;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster never came back: {ready}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let masters = ready["cache"]["masters"].as_array().unwrap().clone();
    let mut addresses: Vec<String> = masters
        .iter()
        .map(|m| m["address"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    assert_eq!(addresses, cluster.masters(), "{ready}");
    for master in &masters {
        assert_eq!(master["status"], "up", "{ready}");
        assert_eq!(master["replicas"], 1, "{ready}");
    }
    assert_eq!(masters[0]["slots"], "0-5460", "in slot order: {ready}");
}
