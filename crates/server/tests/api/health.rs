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
