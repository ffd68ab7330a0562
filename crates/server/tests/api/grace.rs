//! Expire by tag (issue 11): an analytics with a grace (`CACHE_GRACE_<TYPE>`)
//! is served stale after an event, within the grace, with `X-Cache: stale`
//! and its `Age`, while one refresh brings the fresh value; analytics
//! without a grace stay strict. On the embedded cache and on Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spywatcher_analytics::{AnalyticsKind, EventKind};

use crate::helpers::*;

const GRACE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_makes_a_graced_analytics_stale_within_its_grace_and_a_strict_one_a_miss() {
    for backend in [Backend::Embedded, Backend::Redis] {
        let env = TestEnv::on(Db::Sqlite, backend).await;
        let mut settings = env.settings();
        settings.graces = HashMap::from([(AnalyticsKind::Lurkers, GRACE)]);
        let app = env.spawn_with(settings).await;
        let guilds = seed(&app.store).await;
        let guild = &guilds[0];
        for kind in ["lurkers", "ghosts"] {
            assert_eq!(header(&app.analytics(kind, guild).await, "x-cache"), "miss");
            assert_eq!(header(&app.analytics(kind, guild).await, "x-cache"), "hit");
        }
        let before = json(app.analytics("lurkers", guild).await).await;
        let user = a_lurker(&app, guild).await;

        // A message by a lurker: no longer a lurker, and ghosts change too.
        let stored = app
            .post_events("messages", event(EventKind::Message, guild, &user))
            .await;
        assert_eq!(stored.status().as_u16(), 201, "{backend:?}");

        let stale = app.analytics("lurkers", guild).await;
        assert_eq!(header(&stale, "x-cache"), "stale", "{backend:?}");
        let age: u64 = header(&stale, "age").parse().expect("an Age header");
        assert!(age <= GRACE.as_secs(), "{backend:?}: age {age}");
        assert_eq!(json(stale).await, before, "{backend:?}: the previous value");
        assert_eq!(
            header(&app.analytics("ghosts", guild).await, "x-cache"),
            "miss",
            "{backend:?}: ghosts has no grace"
        );

        // The refresh lands: fresh, and without the user.
        let fresh = app
            .store
            .analytics_now(AnalyticsKind::Lurkers, guild, None)
            .await
            .unwrap()
            .to_json();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let response = app.analytics("lurkers", guild).await;
            if header(&response, "x-cache") == "hit" {
                let served = json(response).await;
                assert_eq!(served, fresh, "{backend:?}");
                assert!(!served.to_string().contains(&user));
                break;
            }
            assert!(Instant::now() < deadline, "{backend:?}: no refresh landed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let stats = cache_stats(&app).await["stats"].clone();
        assert!(stats["stale"].as_u64() >= Some(1), "{stats}");
        assert!(stats["refreshes"].as_u64() >= Some(1), "{stats}");
        assert!(
            stats["staleness"]["maxMs"].as_u64() <= Some(GRACE.as_millis() as u64),
            "{stats}"
        );
        assert!(
            stats["byType"]["analytics:lurkers"]["stale"].as_u64() >= Some(1),
            "{stats}"
        );
        let served_stale = r#"spywatcher_analytics_requests_total{type="lurkers",cache="stale"}"#;
        assert!(metric(&app, served_stale).await >= 1.0, "{served_stale}");
        app.stop().await;
    }
}
