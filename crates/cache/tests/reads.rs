//! Reads through Redis without the L1 tier: on a standalone Redis with the
//! tags' markers held in process (`store/redis/tracking.rs`), on a cluster
//! (no client tracking there) by the hinted `MGET` of the entry and its
//! markers, split per slot (`store/redis/hints.rs`). Either way, whatever
//! changes a marker, the very next read knows it. The tags are on other
//! masters than the entry, so that a read crosses masters.

mod common;

use std::time::Duration;

use common::{Backing, RedisServer, fast_config};
use spywatcher_cache::{Cache, CacheConfig, SetOptions};

fn tracked_cache(server: &RedisServer) -> Cache {
    Cache::new(CacheConfig {
        l1_max_bytes: 0,
        ..fast_config(server)
    })
    .expect("cache")
}

/// Without L1: every read goes to Redis (tracked on a standalone server).
async fn l2_cache(backing: &Backing) -> Cache {
    let config = CacheConfig {
        l1_max_bytes: 0,
        ..backing.config()
    };
    backing.cache_with(config).await
}

fn tagged(tags: &[&str]) -> SetOptions {
    SetOptions::ttl(Duration::from_secs(300)).tags(tags.iter().copied())
}

/// Connections with client tracking on (`t` among their flags).
fn tracking_clients(server: &RedisServer) -> usize {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("flags="))
                .is_some_and(|flags| flags.contains('t'))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_by_another_client_is_seen_by_the_very_next_read() {
    for backing in Backing::each() {
        let reader = l2_cache(&backing).await;
        let writer = l2_cache(&backing).await;
        let tags = backing.tags_apart("k", "t", 4);
        let other = tags[3].as_str();
        for round in 0..100 {
            let tag = tags[round % 3].as_str();
            assert!(reader.set("k", &round, tagged(&[tag, other])).await);
            assert_eq!(reader.get::<usize>("k").await, Some(round), "round {round}");
            // Twice: the second read is answered by the markers held here
            // (standalone), or read with the entry in one MGET (cluster).
            assert_eq!(reader.get::<usize>("k").await, Some(round), "round {round}");
            if round < 3 {
                backing.assert_apart("k", &[tag, other]);
            }
            if let (0, Backing::Standalone(server)) = (round, &backing) {
                assert!(
                    tracking_clients(server) >= 1,
                    "reads went through a tracked connection"
                );
            }
            match round % 3 {
                0 => {
                    writer.invalidate_by_tag(tag).await;
                }
                1 => {
                    backing.cli(&["DEL", &backing.marker_key(tag)]);
                }
                _ => backing.lose_everything(),
            }
            assert_eq!(reader.get::<usize>("k").await, None, "round {round}");
        }
    }
}

/// Standalone only: about client tracking, which a cluster does not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_held_are_forgotten_when_the_connection_is_lost() {
    let server = RedisServer::start();
    let cache = tracked_cache(&server);
    assert!(cache.set("k", &1, tagged(&["t"])).await);
    assert_eq!(cache.get::<i32>("k").await, Some(1));
    assert_eq!(cache.get::<i32>("k").await, Some(1));

    // Redis forgets what this connection holds when it goes; a change made
    // meanwhile reaches nobody. Held markers must not outlive it.
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    server.cli(&["DEL", "spywatcher:~t:{t}"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(cache.get::<i32>("k").await, None, "stale after a reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // And caching goes on, on a new connection.
    common::wait_until("cached again", Duration::from_secs(2), async || {
        cache.set("k2", &2, tagged(&["t"])).await && cache.get::<i32>("k2").await == Some(2)
    })
    .await;
    cache.invalidate_by_tag("t").await;
    assert_eq!(cache.get::<i32>("k2").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_never_see_a_value_after_its_invalidation_returned() {
    for backing in Backing::each() {
        concurrent_reads_on(&backing).await;
    }
}

async fn concurrent_reads_on(backing: &Backing) {
    let reader = l2_cache(backing).await;
    let writer = l2_cache(backing).await;
    let tags = backing.tags_apart("k", "t", 2);
    let (t, u) = (tags[0].as_str(), tags[1].as_str());
    for round in 0..30_i32 {
        assert!(
            writer.set("k", &round, tagged(&[t, u])).await,
            "round {round}: {:?}",
            writer.stats().await
        );
        if round == 0 {
            backing.assert_apart("k", &tags);
        }
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move {
                    // Reads race the invalidation until they see it.
                    let mut seen = 0;
                    while reader.get::<i32>("k").await.is_some() {
                        seen += 1;
                        if seen > 5_000 {
                            panic!("the invalidation was never seen");
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2)).await;
        writer
            .invalidate_by_tag(if round % 2 == 0 { t } else { u })
            .await;
        // Once the invalidation returned, no read may see the value.
        for _ in 0..20 {
            assert_eq!(reader.get::<i32>("k").await, None, "round {round}");
        }
        for task in readers {
            task.await.expect("reader");
        }
    }
}

/// The same race on the instance that invalidates, with L1 on and reads
/// through `remember` (which fill L1): once its own invalidation returned,
/// no read sees the value (SPEC 1.2.13; `races.rs` forces the interleaving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_l1_never_see_a_value_after_their_own_instance_invalidated_it() {
    for backing in Backing::each() {
        reads_through_l1_on(&backing).await;
    }
}

async fn reads_through_l1_on(backing: &Backing) {
    let cache = backing.cache().await;
    let writer = backing.cache().await;
    let tags = backing.tags_apart("k", "t", 2);
    let (t, u) = (tags[0].as_str(), tags[1].as_str());
    for round in 0..30_i32 {
        assert!(
            writer.set("k", &round, tagged(&[t, u])).await,
            "round {round}: {:?}",
            writer.stats().await
        );
        if round == 0 {
            backing.assert_apart("k", &tags);
        }
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (cache, tags) = (cache.clone(), tags.clone());
                tokio::spawn(async move {
                    let mut seen = 0;
                    loop {
                        let value = cache
                            .remember("k", Duration::from_secs(60), &tags, || async {
                                Ok::<_, ()>(-1)
                            })
                            .await
                            .unwrap();
                        if value != round {
                            break;
                        }
                        seen += 1;
                        assert!(seen < 5_000, "the invalidation was never seen");
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(2)).await;
        cache
            .invalidate_by_tag(if round % 2 == 0 { t } else { u })
            .await;
        for _ in 0..20 {
            assert_ne!(cache.get::<i32>("k").await, Some(round), "round {round}");
        }
        for task in readers {
            task.await.expect("reader");
        }
    }
}

/// `calls` of one command in `INFO commandstats`.
fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// Standalone only: without client tracking (a cluster) such a read costs
/// one round trip (an `EXISTS` of the markers, `hints.rs`), by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_under_a_tag_this_process_invalidated_are_misses_without_a_round_trip() {
    let server = RedisServer::start();
    let cache = tracked_cache(&server);
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        assert!(cache.set(key, &i, tagged(&["t", "g"])).await);
        assert_eq!(cache.get::<usize>(key).await, Some(i));
    }
    cache.invalidate_by_tag("t").await;
    let gets_before = command_calls(&server, "get");
    for key in &keys {
        assert_eq!(cache.get::<usize>(key).await, None, "{key}");
    }
    let gets = command_calls(&server, "get") - gets_before;
    assert!(
        gets <= 2,
        "{gets} GETs for 50 reads of entries known to be stale"
    );

    // Written again elsewhere under other tags: at most one false miss.
    let other = tracked_cache(&server);
    assert!(other.set("k0", &7, tagged(&["u"])).await);
    let _ = cache.get::<usize>("k0").await;
    assert_eq!(cache.get::<usize>("k0").await, Some(7));
}
