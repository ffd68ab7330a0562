//! Cache insights (`Cache::insights`): a known workload, driven step
//! by step on each store, gives known figures, and the suggestions those
//! figures call for, and none where the settings fit.
//!
//! Four key groups, each a workload with a known answer:
//! - `hot:`: 4 keys under one tag, read 3 times each then invalidated, 30
//!   rounds, TTL 60 s: every entry ends by invalidation, a third of the
//!   reads miss, and each miss after the first round follows an
//!   invalidation of a value milliseconds old: a grace of 5 s would have
//!   served all of those (the first round's 4 misses had no previous
//!   value): suggest a grace of 5 s;
//! - `cold:`: 120 keys loaded once (as warming does), never read again,
//!   TTL 200 ms: all expire unread: suggest a shorter TTL;
//! - `ttl:`: 4 keys read 3 times per round, TTL 150 ms, rounds 200 ms apart
//!   and no invalidation: every entry is read and lives out its TTL, a
//!   third of the reads miss: suggest a longer TTL;
//! - `fit:`: 4 keys read 30 times per round then invalidated, TTL 60 s:
//!   1 read in 30 misses: the settings fit, no suggestion.

mod common;

use std::time::Duration;

use common::*;
use spywatcher_cache::{Cache, CacheConfig, InsightsReport, Setting, TypeInsights};

const LONG: Duration = Duration::from_secs(60);
const LOAD: Duration = Duration::from_millis(20);

fn groups() -> Vec<String> {
    ["hot:", "cold:", "ttl:", "fit:"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

async fn read(cache: &Cache, key: &str, ttl: Duration, tag: &str, delay: Duration) {
    let value: Vec<u32> = cache
        .remember(key, ttl, &[tag], || async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(vec![1, 2, 3])
        })
        .await
        .expect("loader");
    assert_eq!(value, [1, 2, 3]);
}

async fn drive(cache: &Cache) {
    for _round in 0..30 {
        for _ in 0..3 {
            for k in 1..=4 {
                read(cache, &format!("hot:{k}"), LONG, "hot-tag", LOAD).await;
            }
        }
        cache.invalidate_by_tag("hot-tag").await;
        for _ in 0..30 {
            for k in 1..=4 {
                read(cache, &format!("fit:{k}"), LONG, "fit-tag", Duration::ZERO).await;
            }
        }
        cache.invalidate_by_tag("fit-tag").await;
    }
    for k in 0..120 {
        let key = format!("cold:{k}");
        read(
            cache,
            &key,
            Duration::from_millis(200),
            "cold-tag",
            Duration::ZERO,
        )
        .await;
    }
    for _round in 0..25 {
        for _ in 0..3 {
            for k in 1..=4 {
                let key = format!("ttl:{k}");
                read(
                    cache,
                    &key,
                    Duration::from_millis(150),
                    "ttl-tag",
                    Duration::ZERO,
                )
                .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn group<'a>(report: &'a InsightsReport, name: &str) -> &'a TypeInsights {
    report
        .by_type
        .get(name)
        .unwrap_or_else(|| panic!("no group {name} in {report:#?}"))
}

fn suggested(report: &InsightsReport, name: &str) -> Vec<(Setting, Option<u64>)> {
    report
        .suggestions
        .iter()
        .filter(|s| s.group == name)
        .map(|s| (s.setting, s.seconds))
        .collect()
}

async fn check(cache: &Cache, store: &str) {
    drive(cache).await;
    let report = cache.insights();
    eprintln!("--- {store}: {:#?}", report.suggestions);

    let hot = group(&report, "hot");
    assert_eq!((hot.reads, hot.misses), (360, 120), "{store}: {hot:#?}");
    assert_eq!(hot.ended.invalidated, 120, "{store}: {hot:#?}");
    assert_eq!(hot.ended.expired, 0, "{store}");
    assert_eq!(
        hot.ended.invalidated_unread, 0,
        "{store}: every entry was read"
    );
    assert_eq!(hot.misses_after_invalidation, 116, "{store}: {hot:#?}");
    assert_eq!(hot.miss_cost.count, 120, "{store}");
    assert!(
        hot.miss_cost.p50_ms >= 20,
        "{store}: loads sleep 20 ms: {hot:#?}"
    );
    assert!(hot.bytes_per_entry >= "[1,2,3]".len() as u64, "{store}");
    assert_eq!(hot.ttl_seconds, 60.0);
    let five = &hot.grace_would_serve[0];
    assert_eq!(
        (five.grace_seconds, five.misses_served),
        (5, 116),
        "{store}"
    );
    assert_eq!(
        suggested(&report, "hot"),
        [(Setting::Grace, Some(5))],
        "{store}"
    );
    let reason = &report
        .suggestions
        .iter()
        .find(|s| s.group == "hot")
        .unwrap()
        .reason;
    assert!(
        reason
            .contains("33 % of reads miss; a grace of 5 s would have served 97 % of those misses"),
        "{store}: {reason}"
    );

    let cold = group(&report, "cold");
    assert_eq!(cold.ended.expired, 120, "{store}: {cold:#?}");
    assert_eq!(cold.ended.expired_unread, 120, "{store}");
    assert_eq!(cold.expired_unread_percent, 100.0);
    assert_eq!(
        suggested(&report, "cold"),
        [(Setting::ShorterTtl, None)],
        "{store}"
    );

    let ttl = group(&report, "ttl");
    assert_eq!((ttl.reads, ttl.misses), (300, 100), "{store}: {ttl:#?}");
    // The last round's entries may not have expired at the report.
    assert!(ttl.ended.expired >= 96, "{store}: {ttl:#?}");
    assert_eq!(ttl.ended.expired_unread, 0, "{store}: every entry was read");
    assert!(ttl.misses_after_expiry >= 92, "{store}: {ttl:#?}");
    assert_eq!(
        suggested(&report, "ttl"),
        [(Setting::LongerTtl, Some(1))],
        "{store}"
    );

    let fit = group(&report, "fit");
    assert_eq!((fit.reads, fit.misses), (3600, 120), "{store}: {fit:#?}");
    assert_eq!(fit.ended.invalidated, 120, "{store}");
    assert!(
        suggested(&report, "fit").is_empty(),
        "{store}: the settings fit"
    );

    assert!(
        report.busiest.iter().any(|s| s.subject == "1"),
        "{store}: {:?}",
        report.busiest
    );
    assert_eq!(report.untracked_entries, 0);
}

#[tokio::test]
async fn a_known_workload_gives_known_figures_and_suggestions_on_every_store() {
    check(
        &Cache::new(CacheConfig {
            stat_groups: groups(),
            ..CacheConfig::embedded()
        })
        .unwrap(),
        "embedded",
    )
    .await;
    let server = RedisServer::start();
    check(
        &Cache::new(CacheConfig {
            stat_groups: groups(),
            ..fast_config(&server)
        })
        .unwrap(),
        "redis with L1",
    )
    .await;
    let server = RedisServer::start();
    check(
        &Cache::new(CacheConfig {
            stat_groups: groups(),
            l1_max_bytes: 0,
            ..fast_config(&server)
        })
        .unwrap(),
        "redis without L1",
    )
    .await;
}

#[tokio::test]
async fn the_tracked_lives_are_bounded() {
    let cache = Cache::new(CacheConfig {
        stat_groups: groups(),
        insights_capacity: 50,
        ..CacheConfig::embedded()
    })
    .unwrap();
    for k in 0..200 {
        read(&cache, &format!("fit:{k}"), LONG, "fit-tag", Duration::ZERO).await;
    }
    let report = cache.insights();
    assert_eq!(
        (report.tracked_entries, report.untracked_entries),
        (50, 150)
    );
    cache.invalidate_by_tag("fit-tag").await;
    let report = cache.insights();
    assert_eq!(
        group(&report, "fit").ended.invalidated,
        50,
        "the tracked ones"
    );
    assert_eq!(report.tracked_entries, 0);
}
