//! The synthetic data generator: deterministic, realistic enough that every
//! analytics finds something, and identical in both databases.

mod common;

use chrono::Duration;
use common::{now, postgres, sqlite};
use serde_json::Value;
use spywatcher_analytics::{
    AnalyticsKind, EventStore, GeneratorConfig, GuildId, Since, generate_into, generated_guild_ids,
};

fn config(seed: u64, guilds: u32, events: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        guilds,
        users: 120,
        days: 30,
        events,
        end: now(),
        guild_skew: 0.0,
    }
}

/// Every analytics of every guild, with and without `since`.
async fn snapshot(store: &EventStore, guilds: &[GuildId]) -> Vec<Value> {
    let since = Some(Since::from(now() - Duration::days(10)));
    let mut out = Vec::new();
    for g in guilds {
        for kind in AnalyticsKind::ALL {
            for s in [None, since] {
                out.push(store.analytics(*kind, g, s, now()).await.unwrap().to_json());
            }
        }
    }
    out
}

#[tokio::test]
async fn same_config_same_data_and_every_analytics_has_rows() {
    let cfg = config(7, 2, 8_000);
    let guilds = generated_guild_ids(&cfg);
    assert_eq!(guilds.len(), 2);
    assert_eq!(guilds, generated_guild_ids(&cfg.clone()));

    let a = sqlite().await;
    let mut calls = 0;
    let summary = generate_into(&a.store, &cfg, |done, total| {
        calls += 1;
        assert!(done <= total);
    })
    .await
    .unwrap();
    assert_eq!(summary.events, 8_000);
    assert_eq!(summary.guilds, guilds);
    assert!(calls >= 2, "progress is reported");
    assert_eq!(a.store.guild_ids().await.unwrap(), {
        let mut g = guilds.clone();
        g.sort();
        g
    });

    for g in &guilds {
        for kind in AnalyticsKind::ALL {
            let rows = a.store.analytics(*kind, g, None, now()).await.unwrap();
            assert!(!rows.is_empty(), "{kind} of guild {g} is empty");
        }
    }

    let b = sqlite().await;
    generate_into(&b.store, &cfg, |_, _| {}).await.unwrap();
    assert_eq!(
        snapshot(&a.store, &guilds).await,
        snapshot(&b.store, &guilds).await
    );

    let other = config(8, 2, 8_000);
    assert_ne!(
        generated_guild_ids(&other),
        guilds,
        "the seed picks the guilds"
    );
}

#[tokio::test]
async fn a_guild_does_not_depend_on_the_others() {
    let one = sqlite().await;
    generate_into(&one.store, &config(3, 1, 3_000), |_, _| {})
        .await
        .unwrap();
    let three = sqlite().await;
    generate_into(&three.store, &config(3, 3, 9_000), |_, _| {})
        .await
        .unwrap();
    let first = &generated_guild_ids(&config(3, 1, 3_000))[..1];
    assert_eq!(
        snapshot(&one.store, first).await,
        snapshot(&three.store, first).await
    );
}

#[tokio::test]
async fn postgres_and_sqlite_agree_on_generated_data() {
    let cfg = config(11, 2, 6_000);
    let guilds = generated_guild_ids(&cfg);
    let (s, p) = (sqlite().await, postgres().await);
    generate_into(&s.store, &cfg, |_, _| {}).await.unwrap();
    generate_into(&p.store, &cfg, |_, _| {}).await.unwrap();
    let (left, right) = (
        snapshot(&s.store, &guilds).await,
        snapshot(&p.store, &guilds).await,
    );
    for (i, (l, r)) in left.iter().zip(&right).enumerate() {
        assert_eq!(
            l, r,
            "snapshot entry {i} differs between sqlite and postgres"
        );
    }
}
