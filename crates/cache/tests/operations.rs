//! The rest of the SPEC 1.1 API: compression, patterns, flush, warm, stats,
//! and memory reclaimed after an invalidation; on a standalone Redis and on
//! a Redis Cluster, where patterns, flush and stats visit every master.

mod common;

use std::collections::BTreeMap;
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
    for backing in Backing::each() {
        large_values_on(&backing).await;
    }
}

async fn large_values_on(backing: &Backing) {
    let cache = backing.cache().await;
    let big = rows(500);
    let json_len = serde_json::to_vec(&big).unwrap().len();
    assert!(cache.set("big", &big, SetOptions::default()).await);
    assert!(cache.set("small", &rows(1), SetOptions::default()).await);
    let stored_len: usize = backing
        .cli(&["STRLEN", &backing.entry_key("big")])
        .parse()
        .unwrap();
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
    for backing in Backing::each() {
        stay_under_the_prefix_on(&backing).await;
    }
}

async fn stay_under_the_prefix_on(backing: &Backing) {
    let cache = backing.cache().await;
    // Keys of others: one that ends like the cache's own, one unrelated.
    let theirs = format!("someone-else:{}", backing.entry_key("analytics:ghosts:1"));
    let unrelated = format!("unrelated-to-{}", backing.prefix());
    backing.cli(&["SET", &theirs, "theirs"]);
    backing.cli(&["SET", &unrelated, "theirs"]);
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
    assert_eq!(backing.cli(&["GET", &theirs]), "theirs");
    assert_eq!(backing.cli(&["GET", &unrelated]), "theirs");
}

/// On a cluster, `clear_pattern`, `flush_all` and `keyCount` must visit
/// every master: the entries here are spread over all three (two of each
/// pattern on each), and stats list each master's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_pattern_flush_all_and_key_count_cover_every_master_of_a_cluster() {
    let backing = Backing::cluster();
    let cache = backing.cache().await;
    let masters = backing.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let spread = |group: &str| -> Vec<String> {
        let mut keys = Vec::new();
        for master in &masters {
            let on_it = (0..)
                .map(|i| format!("spread:{group}:{i}"))
                .filter(|key| backing.master_of(&backing.entry_key(key)) == *master);
            keys.extend(on_it.take(2));
        }
        keys
    };
    let (cleared, kept) = (spread("a"), spread("b"));
    for key in cleared.iter().chain(&kept) {
        assert!(cache.set(key, &1, SetOptions::default().tags(["t"])).await);
    }
    // Where each entry is, asked of each master: the spread is real.
    let per_master = |keys: &[String]| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for key in keys {
            if let Some(master) = backing.holder(&backing.entry_key(key)) {
                *counts.entry(master).or_default() += 1;
            }
        }
        counts
    };
    let two_each: BTreeMap<String, usize> = masters.iter().map(|m| (m.clone(), 2)).collect();
    assert_eq!(per_master(&cleared), two_each);
    assert_eq!(per_master(&kept), two_each);
    assert_key_counts(&cache, &masters, 4).await;

    assert_eq!(cache.clear_pattern("spread:a:*").await, 6);
    assert_eq!(per_master(&cleared), BTreeMap::new(), "left behind");
    assert_eq!(per_master(&kept), two_each, "cleared beyond the pattern");
    assert_key_counts(&cache, &masters, 2).await;

    assert!(cache.flush_all().await >= 6);
    assert_eq!(per_master(&kept), BTreeMap::new(), "left behind");
    let entries_left: Vec<String> = backing
        .keys()
        .into_iter()
        .filter(|k| !k[backing.prefix().len()..].starts_with('~'))
        .collect();
    assert_eq!(entries_left, Vec::<String>::new());
    assert_key_counts(&cache, &masters, 0).await;
}

/// Stats list every master, each holding `each` of the cache's entries,
/// and `keyCount` is their sum.
async fn assert_key_counts(cache: &Cache, masters: &[String], each: u64) {
    let stats = cache.stats().await;
    let mut listed: Vec<(String, u64)> = stats
        .masters
        .iter()
        .map(|m| (m.address.clone(), m.key_count))
        .collect();
    listed.sort();
    let expected: Vec<(String, u64)> = masters.iter().map(|m| (m.clone(), each)).collect();
    assert_eq!(listed, expected, "each master's entries");
    assert_eq!(
        stats.key_count,
        stats.masters.iter().map(|m| m.key_count).sum::<u64>(),
        "keyCount is the masters' sum"
    );
    assert_eq!(stats.key_count, each * masters.len() as u64);
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
    for backing in Backing::each() {
        stats_on(&backing).await;
    }
}

async fn stats_on(backing: &Backing) {
    let config = CacheConfig {
        stat_groups: vec!["analytics:ghosts".into()],
        ..backing.config()
    };
    let cache = backing.cache_with(config).await;
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
    let (backend, masters) = if backing.is_cluster() {
        ("redis-cluster", 3)
    } else {
        ("redis", 0)
    };
    assert_eq!(stats.backend, backend);
    assert_eq!(stats.masters.len(), masters, "{:?}", stats.masters);
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
    for backing in Backing::each() {
        memory_reclaimed_on(&backing).await;
    }
}

async fn memory_reclaimed_on(backing: &Backing) {
    let cache = backing.cache().await;
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
        async || backing.keys().len() < 10,
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
    assert_eq!(
        cache.stats().await.journaled,
        1,
        "counted as journaled all the same: the stats show what waits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_invalidation_gets_time_in_proportion_not_the_breaker() {
    for backing in Backing::each() {
        large_invalidation_on(&backing).await;
    }
}

async fn large_invalidation_on(backing: &Backing) {
    // An ingest batch over many guilds invalidates tens of thousands of tags
    // in one call. A healthy Redis needs longer than one op timeout for
    // that: it must not count as an outage (breaker open, caching stopped).
    // 30,000 tags take 0.3-0.7 s in a debug build here (0.2-0.5 s on the
    // cluster, three masters at once), twice that beside other tests; their
    // budget is one op timeout a thousand. On the cluster each master's part
    // must also be acknowledged by its replica within half an op timeout.
    let op_timeout = Duration::from_millis(if backing.is_cluster() { 150 } else { 60 });
    let config = CacheConfig {
        op_timeout,
        ..backing.config()
    };
    let cache = backing.cache_with(config).await;
    let tags: Vec<String> = (0..30_000).map(|i| format!("guild:{i}")).collect();
    assert!(
        cache
            .set("kept", &1, SetOptions::default().tags(["guild:0"]))
            .await
    );
    let started = std::time::Instant::now();
    cache.invalidate_by_tags(&tags).await;
    let took = started.elapsed();
    assert!(took > op_timeout, "{took:?}: the test must need more time");
    let stats = cache.stats().await;
    assert_eq!(stats.journaled, 0, "the invalidation reached Redis");
    assert_eq!(stats.circuit, "closed");
    assert_eq!(cache.get::<i32>("kept").await, None);
}
