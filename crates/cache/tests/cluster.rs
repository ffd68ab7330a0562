//! What only a Redis Cluster has: its key layout's limits, and the masters
//! the cache reports. (The cache's properties, operations and failovers on
//! a cluster are in the other test files, parameterised.)

mod common;

use std::time::Duration;

use common::*;
use spywatcher_cache::{Cache, CacheConfig, ConfigError, SetOptions};

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_with_braces_is_refused_on_a_cluster_only() {
    let nodes = ["redis://127.0.0.1:7000".to_string()];
    for prefix in ["app{1}:", "{app}:", "app}:"] {
        let config = CacheConfig {
            prefix: prefix.to_string(),
            ..CacheConfig::redis_cluster(nodes.clone())
        };
        match Cache::new(config) {
            Err(ConfigError::ClusterPrefix(p)) => assert_eq!(p, prefix),
            Err(e) => panic!("{prefix}: refused for another reason: {e}"),
            Ok(_) => panic!("{prefix}: accepted"),
        }
    }
    let standalone = CacheConfig {
        prefix: "app{1}:".to_string(),
        ..CacheConfig::redis("redis://127.0.0.1:7000")
    };
    assert!(
        Cache::new(standalone).is_ok(),
        "a standalone Redis takes it"
    );
}

/// A tag whose keys could not share a slot (empty, or beginning with `}`)
/// stores nothing on a cluster, and invalidating it neither fails nor
/// trips the breaker; other tags go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_without_a_slot_of_its_own_stores_nothing_and_breaks_nothing() {
    let cluster = RedisCluster::start();
    let cache = Cache::new(cluster_config(&cluster)).expect("cache");
    for tag in ["", "}odd"] {
        let stored = cache
            .set("k", &1u32, SetOptions::ttl(TTL).tags([tag, "guild:1"]))
            .await;
        assert!(!stored, "{tag:?}: refused");
        assert_eq!(cache.get::<u32>("k").await, None);
        assert_eq!(cache.invalidate_by_tag(tag).await, 0);
        let value = cache
            .remember("r", TTL, &[tag], || async { Ok::<_, ()>(7u32) })
            .await;
        assert_eq!(value, Ok(7), "{tag:?}: served from the loader");
        assert!(!cache.is_degraded(), "{tag:?}: not a Redis failure");
    }
    assert!(
        cache
            .set("k", &2u32, SetOptions::ttl(TTL).tags(["guild:1"]))
            .await
    );
    assert_eq!(cache.get::<u32>("k").await, Some(2));
    let stats = cache.stats().await;
    assert_eq!(stats.errors, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_master_is_reported_and_one_that_hangs_shows_down() {
    let cluster = RedisCluster::start();
    let cache = Cache::new(cluster_config(&cluster)).expect("cache");
    let masters = cache.masters().await;
    let mut addresses: Vec<String> = masters.iter().map(|m| m.address.clone()).collect();
    addresses.sort();
    assert_eq!(addresses, cluster.masters());
    assert!(
        masters.iter().all(|m| m.up && m.replicas == 1),
        "{masters:?}"
    );
    let slots: Vec<&str> = masters.iter().map(|m| m.slots.as_str()).collect();
    assert!(slots.contains(&"0-5460"), "{slots:?}");

    let paused = cluster.masters()[1].clone();
    cluster.node(cluster.index_of(&paused)).pause();
    let masters = cache.masters().await;
    cluster.node(cluster.index_of(&paused)).resume();
    for master in &masters {
        assert_eq!(master.up, master.address != paused, "{masters:?}");
    }
    assert_eq!(masters.len(), 3);
}

/// `warm` on a cluster: one pipeline per master for the tags' steps, then
/// one per master for the entries; every entry readable, and invalidating
/// one tag makes exactly its entries unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_pipelines_per_master_and_every_entry_is_stored_under_its_tags() {
    let cluster = RedisCluster::start();
    let cache = Cache::new(CacheConfig {
        op_timeout: Duration::from_millis(250),
        ..cluster_config(&cluster)
    })
    .expect("cache");
    let entries: Vec<(String, u32, SetOptions)> = (0..5_000u32)
        .map(|i| {
            let tags = [format!("guild:{}", i % 7), "analytics:ghosts".to_string()];
            (format!("warm:{i}"), i, SetOptions::ttl(TTL).tags(tags))
        })
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(cache.warm(entries).await, 5_000);
    println!("warmed 5,000 entries in {:?}", started.elapsed());
    for i in (0..5_000u32).step_by(97) {
        assert_eq!(cache.get::<u32>(&format!("warm:{i}")).await, Some(i));
    }
    assert!(cache.invalidate_by_tag("guild:3").await >= 714);
    for i in 0..50u32 {
        let expected = (i % 7 != 3).then_some(i);
        assert_eq!(
            cache.get::<u32>(&format!("warm:{i}")).await,
            expected,
            "warm:{i}"
        );
    }
}
