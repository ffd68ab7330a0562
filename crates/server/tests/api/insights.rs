//! Cache insights (issue 14): a known workload, driven through the HTTP API
//! against a real database and a real Redis (and the embedded cache), shows
//! in the stats route's `insights` with the figures it must have and the
//! suggestions they call for, none where the settings fit; the same reaches
//! `/metrics` and `spywatcher cache insights`.
//!
//! The workload, on one guild:
//! - ghosts: 40 rounds of 3 reads then a typing event (which invalidates
//!   ghosts): every entry ends by invalidation long before its TTL, a third
//!   of the reads miss, and all but the first miss find a value invalidated
//!   milliseconds earlier: a grace of 5 s is suggested;
//! - roles: 25 rounds of 20 reads then a role change: 1 read in 20 misses,
//!   the settings fit: no suggestion;
//! - heatmap (TTL 1 s here): 120 distinct `since` values read once each, as
//!   a warming would, on another guild: all expire unread: a shorter TTL is
//!   suggested.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use spywatcher_analytics::{AnalyticsKind, EventKind};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_workload_shows_in_the_insights_with_its_suggestions() {
    for (db, backend) in [
        (Db::Sqlite, Backend::Redis),
        (Db::Postgres, Backend::Embedded),
    ] {
        let env = TestEnv::on(db, backend).await;
        let mut settings = env.settings();
        settings.ttls = HashMap::from([(AnalyticsKind::Heatmap, Duration::from_secs(1))]);
        let app = env.spawn_with(settings).await;
        let guilds = seed(&app.store).await;
        let (guild, other) = (&guilds[0], &guilds[1]);
        let user = a_lurker(&app, guild).await;

        for _ in 0..40 {
            for _ in 0..3 {
                app.analytics("ghosts", guild).await;
            }
            let typed = app
                .post_events("typing", event(EventKind::Typing, guild, &user))
                .await;
            assert_eq!(typed.status().as_u16(), 201);
        }
        for _ in 0..25 {
            for _ in 0..20 {
                app.analytics("roles", guild).await;
            }
            let changed = app
                .post_events("role-changes", event(EventKind::RoleChange, guild, &user))
                .await;
            assert_eq!(changed.status().as_u16(), 201);
        }
        let now = chrono::Utc::now().timestamp_millis();
        for i in 0..120 {
            let since = now - 86_400_000 - i * 1000;
            let path = format!("/api/analytics/heatmap?guildId={other}&since={since}");
            assert_eq!(app.get(&path, Some(API)).await.status().as_u16(), 200);
        }
        tokio::time::sleep(Duration::from_millis(1_300)).await;

        let body = cache_stats(&app).await;
        let insights = &body["insights"];
        let ghosts = &insights["byType"]["ghosts"];
        assert_eq!(ghosts["reads"], 120, "{backend:?}: {ghosts:#}");
        assert_eq!(ghosts["misses"], 40, "{backend:?}: {ghosts:#}");
        assert_eq!(
            ghosts["ended"]["invalidated"], 40,
            "{backend:?}: {ghosts:#}"
        );
        assert_eq!(ghosts["missesAfterInvalidation"], 39, "{backend:?}");
        assert_eq!(ghosts["missCost"]["count"], 40, "{backend:?}");
        assert!(ghosts["bytesPerEntry"].as_u64().unwrap() > 2, "{ghosts:#}");
        assert_eq!(ghosts["ttlSeconds"], 300.0);

        let suggestions = insights["suggestions"].as_array().unwrap();
        let of = |kind: &str| -> Vec<&serde_json::Value> {
            suggestions.iter().filter(|s| s["type"] == kind).collect()
        };
        let grace = of("ghosts");
        assert_eq!(grace.len(), 1, "{backend:?}: {suggestions:#?}");
        assert_eq!(grace[0]["setting"], "grace");
        assert_eq!(grace[0]["apply"], "CACHE_GRACE_GHOSTS=5");
        let reason = grace[0]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("ghosts: entries are invalidated after")
                && reason.contains("33 % of reads miss; a grace of 5 s would have served 98 % of those misses (measured)"),
            "{reason}"
        );

        let roles = &insights["byType"]["roles"];
        assert_eq!(
            (&roles["reads"], &roles["misses"]),
            (&500.into(), &25.into()),
            "{roles:#}"
        );
        assert_eq!(roles["ended"]["invalidated"], 25, "{roles:#}");
        assert!(
            of("roles").is_empty(),
            "{backend:?}: roles fit: {suggestions:#?}"
        );

        let heatmap = &insights["byType"]["heatmap"];
        assert_eq!(
            heatmap["ended"]["expiredUnread"], 120,
            "{backend:?}: {heatmap:#}"
        );
        let shorter = of("heatmap");
        assert_eq!(shorter.len(), 1, "{suggestions:#?}");
        assert_eq!(shorter[0]["setting"], "shorter-ttl");
        assert!(
            shorter[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("heatmap: 100 % of entries expire unread")
        );
        assert_eq!(insights["busiestGuilds"][0]["guildId"], guild.as_str());

        // The same in /metrics (gauges of the whole process: other tests
        // export theirs too, so only their presence is checked) and on the
        // command line.
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        for line in [
            "spywatcher_cache_entry_lifetime_p50_seconds{type=\"ghosts\"}",
            "spywatcher_cache_suggestions{type=\"ghosts\"}",
            "spywatcher_cache_entries_ended{type=\"ghosts\",cause=\"invalidated\"}",
        ] {
            assert!(metrics.contains(line), "{line} in /metrics");
        }
        let printed = insights_command(&app).await;
        eprintln!("{printed}");
        assert!(printed.contains("type     reads"), "{printed}");
        assert!(printed.contains("apply: CACHE_GRACE_GHOSTS=5"), "{printed}");
        assert!(
            printed.contains("heatmap: 100 % of entries expire unread"),
            "{printed}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_fresh_instance_suggests_nothing_and_says_so() {
    let env = TestEnv::on(Db::Sqlite, Backend::Embedded).await;
    let app = env.spawn().await;
    let body = cache_stats(&app).await;
    assert_eq!(body["insights"]["suggestions"], serde_json::json!([]));
    assert_eq!(body["insights"]["byType"]["ghosts"]["reads"], 0);
    let unauthorized = app
        .request(Method::GET, "/api/admin/monitoring/cache/stats", Some(API))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthorized.status().as_u16(),
        403,
        "insights are the admin's"
    );
    let printed = insights_command(&app).await;
    assert!(
        printed.contains("No suggestion: the settings fit"),
        "{printed}"
    );
    app.stop().await;
}

/// What `spywatcher cache insights` prints about `app`'s cache (it must succeed).
async fn insights_command(app: &TestApp) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_spywatcher"))
        .args([
            "cache",
            "insights",
            "--server",
            &app.address,
            "--token",
            ADMIN,
        ])
        .output()
        .await
        .expect("spywatcher cache insights runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{printed}");
    printed
}
