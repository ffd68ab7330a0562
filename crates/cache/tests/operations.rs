//! The rest of the SPEC 1.1 API: compression, patterns, flush, warm, stats,
//! and memory reclaimed after an invalidation.

mod common;

use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use spywatcher_cache::{Cache, CacheConfig, Origin, SetOptions};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    user_id: String,
    score: f64,
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            user_id: format!("{}", 100_000_000_000_000_000u64 + i as u64),
            score: i as f64 / 3.0,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_are_stored_compressed_and_read_back_transparently() {
    let server = RedisServer::start();
    let cache = redis_cache(&server);
    let big = rows(500);
    let json_len = serde_json::to_vec(&big).unwrap().len();
    assert!(cache.set("big", &big, SetOptions::default()).await);
    assert!(cache.set("small", &rows(1), SetOptions::default()).await);
    let stored_len: usize = server.cli(&["STRLEN", "spywatcher:big"]).parse().unwrap();
    assert!(
        stored_len * 2 < json_len,
        "{stored_len} bytes stored for {json_len} bytes of JSON"
    );
    assert!(
        cache.get::<Vec<Row>>("big").await == Some(big.clone()),
        "round trip"
    );
    let json = cache.get_json("big").await.unwrap();
    assert!(
        serde_json::from_slice::<Vec<Row>>(&json.bytes).unwrap() == big,
        "raw JSON round trip"
    );
    assert_eq!(
        json.digest,
        xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(&big).unwrap()),
        "the digest is that of the JSON, not of its compressed form"
    );
    assert_eq!(cache.get::<Vec<Row>>("small").await, Some(rows(1)));
    assert!(cache.stats().await.compression_bytes_saved > (json_len / 2) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_pattern_and_flush_all_stay_under_the_prefix() {
    let server = RedisServer::start();
    let cache = redis_cache(&server);
    server.cli(&["SET", "someone-else:analytics:ghosts:1", "theirs"]);
    server.cli(&["SET", "unrelated", "theirs"]);
    for key in [
        "analytics:ghosts:1:all",
        "analytics:ghosts:2:all",
        "analytics:roles:1:all",
    ] {
        cache.set(key, &1, SetOptions::default()).await;
    }
    assert_eq!(cache.clear_pattern("analytics:ghosts:*").await, 2);
    assert_eq!(cache.get::<i32>("analytics:ghosts:1:all").await, None);
    assert_eq!(cache.get::<i32>("analytics:roles:1:all").await, Some(1));
    assert!(cache.flush_all().await >= 1);
    assert_eq!(cache.get::<i32>("analytics:roles:1:all").await, None);
    assert_eq!(
        server.cli(&["GET", "someone-else:analytics:ghosts:1"]),
        "theirs"
    );
    assert_eq!(server.cli(&["GET", "unrelated"]), "theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_pattern_on_the_embedded_store() {
    let cache = embedded_cache();
    for key in [
        "analytics:ghosts:1:all",
        "analytics:ghosts:2:all",
        "analytics:roles:1:all",
    ] {
        cache.set(key, &1, SetOptions::default()).await;
    }
    assert_eq!(cache.clear_pattern("analytics:ghosts:*").await, 2);
    assert_eq!(cache.get::<i32>("analytics:roles:1:all").await, Some(1));
    assert_eq!(cache.flush_all().await, 1);
    assert_eq!(cache.get::<i32>("analytics:roles:1:all").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_stores_many_entries_with_their_tags() {
    for setup in Setup::all() {
        let cache = setup.cache();
        let entries = (0..300).map(|i| {
            let options =
                SetOptions::ttl(Duration::from_secs(60)).tags([format!("guild:{}", i % 3)]);
            (format!("warm:{i}"), i, options)
        });
        assert_eq!(cache.warm(entries).await, 300, "{}", setup.name());
        assert_eq!(cache.get::<i32>("warm:299").await, Some(299));
        cache.invalidate_by_tag("guild:0").await;
        assert_eq!(cache.get::<i32>("warm:0").await, None);
        assert_eq!(cache.get::<i32>("warm:1").await, Some(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_the_reference_fields_and_more() {
    let server = RedisServer::start();
    let cache = Cache::new(CacheConfig {
        stat_groups: vec!["analytics:ghosts".into()],
        ..fast_config(&server)
    })
    .unwrap();
    cache
        .set("analytics:ghosts:1:all", &1, SetOptions::default())
        .await;
    cache.get::<i32>("analytics:ghosts:1:all").await;
    cache.get::<i32>("analytics:ghosts:2:all").await;
    cache.get::<i32>("elsewhere").await;
    let stats = cache.stats().await;
    assert_eq!((stats.hits, stats.misses, stats.l2_hits), (1, 2, 1));
    assert_eq!(stats.hit_rate, 33.33);
    assert_eq!(stats.key_count, 1, "bookkeeping keys are not counted");
    assert!(
        stats.memory_used.ends_with('M') || stats.memory_used.ends_with('K'),
        "{}",
        stats.memory_used
    );
    assert_eq!(stats.circuit, "closed");
    assert_eq!(stats.by_type["analytics:ghosts"].misses, 1);
    assert_eq!(stats.by_type["other"].misses, 1);
    let json = serde_json::to_value(&stats).unwrap();
    for field in [
        "hits",
        "misses",
        "hitRate",
        "memoryUsed",
        "evictedKeys",
        "keyCount",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_invalidated_entries_is_reclaimed_before_their_ttl() {
    let server = RedisServer::start();
    let cache = redis_cache(&server);
    let entries = (0..2_000).map(|i| {
        (
            format!("e:{i}"),
            i,
            SetOptions::ttl(Duration::from_secs(3600)).tags(["big"]),
        )
    });
    assert_eq!(cache.warm(entries).await, 2_000);
    cache
        .set(
            "survivor",
            &1,
            SetOptions::ttl(Duration::from_secs(3600)).tags(["other"]),
        )
        .await;
    assert_eq!(cache.invalidate_by_tag("big").await, 2_000);
    // Written again after the invalidation: current, so the sweeper keeps it.
    cache
        .set(
            "e:7",
            &7,
            SetOptions::ttl(Duration::from_secs(3600)).tags(["big"]),
        )
        .await;
    wait_until(
        "the sweeper reclaims the stale entries",
        Duration::from_secs(5),
        async || server.cli(&["DBSIZE"]).parse::<u64>().unwrap() < 10,
    )
    .await;
    assert_eq!(cache.get::<i32>("e:7").await, Some(7));
    assert_eq!(cache.get::<i32>("survivor").await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_under_the_bookkeeping_namespace_are_refused() {
    let cache = embedded_cache();
    assert!(!cache.set("~t:{x}", &1, SetOptions::default()).await);
    assert!(!cache.set("", &1, SetOptions::default()).await);
    assert_eq!(cache.get::<i32>("~t:{x}").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_starts_while_redis_is_down_and_uses_it_once_up() {
    let mut server = RedisServer::start();
    server.kill();
    let cache = redis_cache(&server);
    let loaded: Result<i32, ()> = cache
        .remember("k", Duration::from_secs(60), &["t"], || async { Ok(1) })
        .await;
    assert_eq!(loaded, Ok(1));
    server.restart();
    wait_until("caching works", Duration::from_secs(5), async || {
        cache.set("k", &2, SetOptions::default()).await
    })
    .await;
    assert_eq!(cache.get::<i32>("k").await, Some(2));
}

#[test]
fn a_prefix_with_glob_characters_is_refused() {
    let err = Cache::new(CacheConfig {
        prefix: "spy*".into(),
        ..CacheConfig::embedded()
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("prefix"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_json_serves_the_stored_json_its_digest_and_where_it_came_from() {
    for setup in Setup::all() {
        let cache = setup.cache();
        let load = || async { Ok::<_, ()>(rows(100)) };
        let (first, origin) = cache
            .remember_json("j", Duration::from_secs(60), &["t"], load)
            .await
            .unwrap();
        assert_eq!(origin, Origin::Loader, "{}", setup.name());
        let (second, origin) = cache
            .remember_json("j", Duration::from_secs(60), &["t"], load)
            .await
            .unwrap();
        assert!(origin.is_hit(), "{}", setup.name());
        assert_eq!(first, second);
        assert!(serde_json::from_slice::<Vec<Row>>(&second.bytes).unwrap() == rows(100));
        assert_eq!(
            second.digest,
            xxhash_rust::xxh3::xxh3_64(&second.bytes),
            "{}",
            setup.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_recorded_by_the_caller_is_not_journaled_twice() {
    let mut server = RedisServer::start();
    let journal = std::sync::Arc::new(spywatcher_cache::MemoryJournal::new());
    let cache = redis_cache_with_journal(&server, journal.clone());
    cache.set("k", &1, SetOptions::default().tags(["t"])).await;
    assert_eq!(
        cache.invalidate_recorded(&["t"], 1).await,
        Some(1),
        "Redis took it: one entry was under the tag"
    );
    assert_eq!(cache.get::<i32>("k").await, None);
    server.kill();
    assert_eq!(
        cache.invalidate_recorded(&["t"], 2).await,
        None,
        "Redis down"
    );
    assert!(journal.is_empty(), "the caller's own record stands for it");
    assert!(
        cache.is_degraded(),
        "no reads from Redis until the journal is applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_invalidation_gets_time_in_proportion_not_the_breaker() {
    // An ingest batch over many guilds invalidates tens of thousands of tags
    // in one call. A healthy Redis needs longer than one op timeout for
    // that: it must not count as an outage (breaker open, caching stopped).
    let server = RedisServer::start();
    let cache = Cache::new(CacheConfig {
        op_timeout: Duration::from_millis(30),
        ..fast_config(&server)
    })
    .expect("cache");
    let tags: Vec<String> = (0..30_000).map(|i| format!("guild:{i}")).collect();
    assert!(
        cache
            .set("kept", &1, SetOptions::default().tags(["guild:0"]))
            .await
    );
    cache.invalidate_by_tags(&tags).await;
    let stats = cache.stats().await;
    assert_eq!(stats.journaled, 0, "the invalidation reached Redis");
    assert_eq!(stats.circuit, "closed");
    assert_eq!(cache.get::<i32>("kept").await, None);
}
