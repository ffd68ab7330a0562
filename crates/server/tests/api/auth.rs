use reqwest::Method;

use crate::helpers::*;

/// Every protected route: (method, path, role needed).
const PROTECTED: &[(&str, &str, &str)] = &[
    ("GET", "/api/analytics/ghosts?guildId=1", "read"),
    ("POST", "/api/analytics/roles?guildId=1", "read"),
    ("POST", "/api/events/messages", "ingest"),
    ("GET", "/api/admin/monitoring/cache/stats", "admin"),
    ("DELETE", "/api/admin/monitoring/cache/clear", "admin"),
    (
        "DELETE",
        "/api/admin/monitoring/cache/invalidate/guild:1",
        "admin",
    ),
    (
        "POST",
        "/api/admin/monitoring/cache/warm?guildId=1",
        "admin",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_and_wrong_token_get_401_and_wrong_role_gets_403() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    for &(method, path, role) in PROTECTED {
        let method: Method = method.parse().unwrap();
        let none = app
            .request(method.clone(), path, None)
            .send()
            .await
            .unwrap();
        assert_error(none, 401).await;
        let wrong = app
            .request(method.clone(), path, Some("not-a-token-of-this-server"))
            .send()
            .await
            .unwrap();
        assert_error(wrong, 401).await;
        let basic = app
            .request(method.clone(), path, None)
            .header("Authorization", format!("Basic {ADMIN}"))
            .send()
            .await
            .unwrap();
        assert_error(basic, 401).await;
        for (token, token_role) in [(API, "read"), (INGEST, "ingest")] {
            let response = app
                .request(method.clone(), path, Some(token))
                .send()
                .await
                .unwrap();
            if token_role == role {
                assert_ne!(response.status().as_u16(), 401, "{path}");
                assert_ne!(response.status().as_u16(), 403, "{path}");
            } else {
                let body = assert_error(response, 403).await;
                assert_eq!(body["error"], "forbidden");
            }
        }
        // The admin token may do everything.
        let admin = app
            .request(method.clone(), path, Some(ADMIN))
            .send()
            .await
            .unwrap();
        assert!(![401, 403].contains(&admin.status().as_u16()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_admin_token_makes_one() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.admin_token = None;
    let app = spywatcher::startup::Application::build(&settings)
        .await
        .unwrap();
    let token = app
        .generated_admin_token
        .clone()
        .expect("a generated token");
    assert!(token.len() >= 32);
    assert!(app.state().tokens.identify(&token).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_are_rate_limited_with_retry_after() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.rate_limit_per_minute = 5;
    // Each request a unit, the first one's miss included (misses: edges.rs).
    settings.rate_limit_miss_cost = 1;
    let app = env.spawn_with(settings).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = app.get("/api/analytics/ghosts?guildId=1", Some(API)).await;
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            let retry: u64 = header(&response, "retry-after")
                .parse()
                .expect("Retry-After seconds");
            assert!((1..=60).contains(&retry));
            assert_error(response, 429).await;
        }
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses.ends_with(&[429, 429, 429]), "{statuses:?}");
    // Other routes are not limited.
    assert_eq!(app.get("/health/live", None).await.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rate_limiting_is_shared_between_instances() {
    let env = TestEnv::new(Db::Sqlite, true).await;
    let mut settings = env.settings();
    settings.rate_limit_per_minute = 4;
    settings.rate_limit_miss_cost = 1;
    settings.redis_rate_limiting = true;
    let a = env.spawn_with(settings.clone()).await;
    let b = env.spawn_with(settings).await;
    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b, &a, &b] {
        statuses.push(
            app.get("/api/analytics/roles?guildId=1", Some(API))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}
