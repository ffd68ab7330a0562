use reqwest::Method;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_monitoring_routes_on_both_databases() {
    for db in BOTH_DATABASES {
        let env = TestEnv::new(db, true).await;
        let app = env.spawn().await;
        let guilds = seed(&app.store).await;
        let guild = guilds[0].as_str();

        let warmed = app
            .request(
                Method::POST,
                &format!("/api/admin/monitoring/cache/warm?guildId={guild}"),
                Some(ADMIN),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(warmed.status().as_u16(), 200);
        let warmed = json(warmed).await;
        assert_eq!(warmed["warmed"], 6);
        assert_eq!(warmed["guildId"], guild);
        for kind in ["ghosts", "lurkers", "heatmap", "roles", "clients", "shifts"] {
            assert_eq!(
                header(&app.analytics(kind, &guilds[0]).await, "x-cache"),
                "hit",
                "{kind}"
            );
        }

        let stats = json(
            app.get("/api/admin/monitoring/cache/stats", Some(ADMIN))
                .await,
        )
        .await;
        assert_eq!(stats["status"], "healthy");
        assert!(stats["timestamp"].is_string());
        for field in [
            "hits",
            "misses",
            "hitRate",
            "memoryUsed",
            "evictedKeys",
            "keyCount",
        ] {
            assert!(!stats["stats"][field].is_null(), "{field}: {stats}");
        }
        assert_eq!(stats["stats"]["keyCount"], 6);
        assert_eq!(stats["stats"]["byType"]["analytics:ghosts"]["hits"], 1);

        let invalidated = app
            .request(
                Method::DELETE,
                &format!("/api/admin/monitoring/cache/invalidate/guild:{guild}"),
                Some(ADMIN),
            )
            .send()
            .await
            .unwrap();
        let invalidated = json(invalidated).await;
        assert_eq!(invalidated["tag"], format!("guild:{guild}"));
        assert_eq!(invalidated["invalidated"], 6);
        assert_eq!(
            header(&app.analytics("ghosts", &guilds[0]).await, "x-cache"),
            "miss"
        );

        let cleared = json(
            app.request(
                Method::DELETE,
                "/api/admin/monitoring/cache/clear",
                Some(ADMIN),
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert!(cleared["deleted"].as_u64().unwrap() >= 1, "{cleared}");
        assert!(cleared["message"].is_string());
        assert_eq!(
            header(&app.analytics("ghosts", &guilds[0]).await, "x-cache"),
            "miss"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_characters_and_bad_tags_are_refused() {
    let env = TestEnv::new(Db::Sqlite, false).await;
    let app = env.spawn().await;
    for tag in [
        "guild:*",
        "guild:%2A",
        "guild:%3F",
        "guild:%5B12%5D",
        "a%20b",
        "%C3%A9t%C3%A9",
    ] {
        let response = app
            .request(
                Method::DELETE,
                &format!("/api/admin/monitoring/cache/invalidate/{tag}"),
                Some(ADMIN),
            )
            .send()
            .await
            .unwrap();
        assert_error(response, 400).await;
    }
    let long = "x".repeat(201);
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/admin/monitoring/cache/invalidate/{long}"),
            Some(ADMIN),
        )
        .send()
        .await
        .unwrap();
    assert_error(response, 400).await;
    let no_guild = app
        .request(
            Method::POST,
            "/api/admin/monitoring/cache/warm",
            Some(ADMIN),
        )
        .send()
        .await
        .unwrap();
    assert_error(no_guild, 400).await;
}
