//! SPEC 1.2: each property has its own test, against a private redis-server
//! and, where the property applies, the embedded store. Test names carry the
//! property's number.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use spywatcher_cache::{Cache, CacheConfig, MemoryJournal, SetOptions};

fn tagged(ttl: Duration, tags: &[&str]) -> SetOptions {
    SetOptions::ttl(ttl).tags(tags.iter().copied())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_ttl_an_entry_is_not_served_after_its_ttl() {
    for setup in Setup::all() {
        let cache = setup.cache();
        assert!(
            cache
                .set("short", &"v", tagged(Duration::from_millis(300), &["t"]))
                .await
        );
        let loaded: Result<u32, ()> = cache
            .remember("remembered", Duration::from_millis(300), &["t"], || async {
                Ok(7)
            })
            .await;
        assert_eq!(loaded, Ok(7));
        assert_eq!(
            cache.get::<String>("short").await.as_deref(),
            Some("v"),
            "{}",
            setup.name()
        );
        assert_eq!(
            cache.get::<u32>("remembered").await,
            Some(7),
            "{}",
            setup.name()
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(cache.get::<String>("short").await, None, "{}", setup.name());
        assert_eq!(
            cache.get::<u32>("remembered").await,
            None,
            "{}",
            setup.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_complete_tag_invalidation_with_mixed_ttls() {
    for setup in Setup::all() {
        let cache = setup.cache();
        let tags = setup.tags_apart("long", "guild", 2);
        let (guild_1, guild_2) = (tags[0].as_str(), tags[1].as_str());
        // The reference design reset the tag set's TTL to the last writer's:
        // a long entry written first, a short one after it.
        assert!(
            cache
                .set("long", &1, tagged(Duration::from_secs(300), &[guild_1]))
                .await
        );
        assert!(
            cache
                .set("short", &2, tagged(Duration::from_secs(2), &[guild_1]))
                .await
        );
        assert!(
            cache
                .set("other", &3, tagged(Duration::from_secs(300), &[guild_2]))
                .await
        );
        // Past the short entry's TTL; this design has no bookkeeping TTL
        // shorter than the longest entry's, so no further wait is needed.
        tokio::time::sleep(Duration::from_millis(2_300)).await;
        assert_eq!(cache.get::<i32>("long").await, Some(1), "{}", setup.name());
        setup.assert_apart("long", &[guild_1]);

        let invalidated = cache.invalidate_by_tag(guild_1).await;
        assert!(invalidated >= 1, "{}: counted {invalidated}", setup.name());
        assert_eq!(cache.get::<i32>("long").await, None, "{}", setup.name());
        let reloaded: Result<i32, ()> = cache
            .remember("long", Duration::from_secs(300), &[guild_1], || async {
                Ok(10)
            })
            .await;
        assert_eq!(reloaded, Ok(10), "remember reloads after invalidation");
        assert_eq!(
            cache.get::<i32>("other").await,
            Some(3),
            "other tags untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_tag_bookkeeping_in_redis_outlives_every_entry_under_the_tag() {
    let server = RedisServer::start();
    let cache = redis_cache(&server);
    cache
        .set("long", &1, tagged(Duration::from_secs(900), &["t"]))
        .await;
    cache
        .set("short", &2, tagged(Duration::from_secs(120), &["t"]))
        .await;
    let marker_ttl: i64 = server.cli(&["PTTL", "spywatcher:~t:{t}"]).parse().unwrap();
    let members_ttl: i64 = server.cli(&["PTTL", "spywatcher:~m:{t}"]).parse().unwrap();
    assert!(
        marker_ttl > 890_000,
        "marker TTL {marker_ttl} ms was cut short"
    );
    assert!(
        members_ttl > 890_000,
        "member set TTL {members_ttl} ms was cut short"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_invalidating_several_tags_at_once() {
    for setup in Setup::all() {
        let cache = setup.cache();
        cache
            .set("a", &1, tagged(Duration::from_secs(60), &["x"]))
            .await;
        cache
            .set("b", &2, tagged(Duration::from_secs(60), &["y", "z"]))
            .await;
        cache
            .set("c", &3, tagged(Duration::from_secs(60), &["w"]))
            .await;
        assert_eq!(
            cache.invalidate_by_tags(&["x", "z"]).await,
            2,
            "{}",
            setup.name()
        );
        assert_eq!(cache.get::<i32>("a").await, None);
        assert_eq!(cache.get::<i32>("b").await, None);
        assert_eq!(cache.get::<i32>("c").await, Some(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_no_resurrection_of_a_value_loaded_before_an_invalidation() {
    for setup in Setup::all() {
        let cache = setup.cache().clone();
        let tags = setup.tags_apart("k", "guild", 1);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let (cache, tags) = (cache.clone(), tags.clone());
            tokio::spawn(async move {
                cache
                    .remember("k", Duration::from_secs(300), &tags, || async move {
                        started_tx.send(()).unwrap();
                        release_rx.await.unwrap();
                        Ok::<_, ()>("stale".to_string())
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        cache.invalidate_by_tag(&tags[0]).await;
        release_tx.send(()).unwrap();
        // Its own caller still gets the value...
        assert_eq!(
            slow.await.unwrap().as_deref(),
            Ok("stale"),
            "{}",
            setup.name()
        );
        // ...but it was not stored as fresh.
        assert_eq!(cache.get::<String>("k").await, None, "{}", setup.name());
        let fresh: Result<String, ()> = cache
            .remember("k", Duration::from_secs(300), &tags, || async {
                Ok("fresh".into())
            })
            .await;
        assert_eq!(fresh.as_deref(), Ok("fresh"), "{}", setup.name());
        assert_eq!(cache.get::<String>("k").await.as_deref(), Some("fresh"));
        setup.assert_apart("k", &tags);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_a_caller_arriving_after_an_invalidation_does_not_join_an_older_load() {
    let cache = embedded_cache();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let first = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .remember("k", Duration::from_secs(60), &["t"], || async move {
                    started_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok::<_, ()>(1)
                })
                .await
        })
    };
    started_rx.await.unwrap();
    cache.invalidate_by_tag("t").await;
    let second: Result<i32, ()> = cache
        .remember("k", Duration::from_secs(60), &["t"], || async { Ok(2) })
        .await;
    assert_eq!(second, Ok(2), "loaded anew, not the pre-invalidation value");
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Ok(1));
    assert_eq!(cache.get::<i32>("k").await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_stampede_1000_concurrent_remembers_run_the_loader_once() {
    for setup in Setup::all() {
        let cache = setup.cache();
        let tags = setup.tags_apart("cold", "t", 1);
        let runs = Arc::new(AtomicU32::new(0));
        let calls = (0..1000).map(|_| {
            let (cache, tags) = (cache.clone(), tags.clone());
            let runs = runs.clone();
            tokio::spawn(async move {
                cache
                    .remember("cold", Duration::from_secs(60), &tags, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, ()>(vec![1, 2, 3])
                    })
                    .await
            })
        });
        for result in futures::future::join_all(calls).await {
            assert_eq!(result.unwrap(), Ok(vec![1, 2, 3]));
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "{}: loader runs",
            setup.name()
        );
        assert_eq!(cache.stats().await.loader_runs, 1);
        // The burst may have timed out calls (fail-open), the store of the
        // value among them: store it once more to see where it lands.
        wait_until("the entry stored", Duration::from_secs(3), async || {
            cache
                .set(
                    "cold",
                    &vec![1, 2, 3],
                    tagged(Duration::from_secs(60), &[&tags[0]]),
                )
                .await
        })
        .await;
        setup.assert_apart("cold", &tags);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_a_failing_loader_propagates_its_error_and_waiters_retry() {
    let cache = embedded_cache();
    let runs = Arc::new(AtomicU32::new(0));
    let calls = (0..20).map(|_| {
        let cache = cache.clone();
        let runs = runs.clone();
        tokio::spawn(async move {
            cache
                .remember("k", Duration::from_secs(60), &["t"], || async move {
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if run == 0 { Err("db down") } else { Ok(run) }
                })
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "only the failed leader sees the error"
    );
    assert!(results.iter().filter_map(|r| r.ok()).all(|v| v == 1));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "one failed run, one successful retry"
    );
}

/// Runs every kind of call and returns the slowest one's duration.
async fn slowest_call(cache: &Cache) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(cache.get::<i32>("k").await, None);
        assert!(!cache.set("k", &i, SetOptions::default()).await);
        let loaded: Result<i32, ()> = cache
            .remember(
                "k",
                Duration::from_secs(60),
                &["t"],
                || async move { Ok(i) },
            )
            .await;
        assert_eq!(loaded, Ok(i));
        assert_eq!(cache.invalidate_by_tag("t").await, 0);
        assert!(!cache.delete("k").await);
        slowest = slowest.max(started.elapsed() / 5);
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_fail_open_when_redis_is_killed_and_resume_after_restart() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server);
    assert!(cache.set("k", &1, SetOptions::default()).await);
    server.kill();

    // The first calls fail (connection refused) and open the breaker.
    for _ in 0..5 {
        let _ = cache.get::<i32>("k").await;
    }
    assert!(cache.is_degraded(), "breaker opens after repeated failures");
    // A generous bound, far from the reference's 8 s per call: with the
    // breaker open a call costs microseconds.
    let slowest = slowest_call(&cache).await;
    assert!(
        slowest < Duration::from_millis(20),
        "a call took {slowest:?} with Redis down"
    );
    let stats = cache.stats().await;
    assert!(stats.skipped > 0 && stats.errors > 0, "{stats:?}");
    assert_eq!(stats.circuit, "open");

    // Events keep arriving through the restart (property 10): they must
    // not keep Redis skipped.
    let events = {
        let cache = cache.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                cache.invalidate_by_tag(&format!("guild:{}", i % 7)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    wait_until("caching resumes", Duration::from_secs(3), async || {
        cache.set("k", &2, SetOptions::default()).await
    })
    .await;
    assert!(!events.is_finished(), "events were still arriving");
    assert_eq!(cache.get::<i32>("k").await, Some(2));
    assert!(!cache.is_degraded());
    events.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_fail_open_when_redis_hangs() {
    let server = RedisServer::start();
    let cache = redis_cache(&server);
    assert!(cache.set("k", &1, SetOptions::default()).await);
    server.pause();
    // Each call costs at most the call timeout (100 ms here) until the
    // breaker opens after three of them; then next to nothing.
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(cache.get::<i32>("k").await, None);
        assert!(started.elapsed() < Duration::from_millis(600));
    }
    assert!(cache.is_degraded());
    let slowest = slowest_call(&cache).await;
    assert!(
        slowest < Duration::from_millis(20),
        "a call took {slowest:?} with Redis hung"
    );
    server.resume();
    wait_until("caching resumes", Duration::from_secs(5), async || {
        !cache.is_degraded()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_invalidation_during_an_outage_is_applied_before_reads_resume() {
    let mut server = RedisServer::start();
    let journal = Arc::new(MemoryJournal::new());
    let a = redis_cache_with_journal(&server, journal.clone());
    // B shares the journal (as instances share a database) and never sees the outage.
    let b = redis_cache_with_journal(&server, journal.clone());
    assert!(
        a.set(
            "ghosts:1",
            &"old",
            tagged(Duration::from_secs(300), &["guild:1"])
        )
        .await
    );
    assert!(
        a.set(
            "ghosts:2",
            &"kept",
            tagged(Duration::from_secs(300), &["guild:2"])
        )
        .await
    );
    assert_eq!(b.get::<String>("ghosts:1").await.as_deref(), Some("old"));
    server.save();
    server.kill();

    assert_eq!(
        a.invalidate_by_tag("guild:1").await,
        0,
        "cannot reach Redis"
    );
    assert_eq!(
        journal.pending_len(),
        1,
        "the invalidation is journaled, not lost"
    );
    assert!(a.is_degraded());

    // Redis comes back with its data: the old entry is in it again.
    server.restart();
    assert_eq!(server.cli(&["EXISTS", "spywatcher:ghosts:1"]), "1");
    // A does not read Redis before the journal is applied...
    let mut reads = 0;
    wait_until("A resumes", Duration::from_secs(5), async || {
        reads += 1;
        assert_eq!(
            a.get::<String>("ghosts:1").await,
            None,
            "A served a stale value"
        );
        !a.is_degraded()
    })
    .await;
    assert!(reads > 0);
    assert_eq!(journal.pending_len(), 0, "applied");
    // ...and neither A nor B serves the invalidated entry afterwards.
    assert_eq!(a.get::<String>("ghosts:1").await, None);
    for _ in 0..5 {
        assert_eq!(b.get::<String>("ghosts:1").await, None);
    }
    assert_eq!(a.get::<String>("ghosts:2").await.as_deref(), Some("kept"));
    assert!(
        a.set(
            "ghosts:1",
            &"new",
            tagged(Duration::from_secs(300), &["guild:1"])
        )
        .await
    );
    // B's connection died with the server: its first call may fail (a miss)
    // while it reconnects; then it reads the new value.
    wait_until(
        "B reads the new value",
        Duration::from_secs(3),
        async || b.get::<String>("ghosts:1").await.as_deref() == Some("new"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_an_instance_that_never_lost_redis_applies_a_journaled_invalidation() {
    let mut server = RedisServer::start();
    let journal = Arc::new(MemoryJournal::new());
    let b = redis_cache_with_journal(&server, journal.clone());
    assert!(
        b.set("k", &"old", tagged(Duration::from_secs(300), &["guild:1"]))
            .await
    );
    assert!(
        b.set("kept", &"v", tagged(Duration::from_secs(300), &["guild:2"]))
            .await
    );
    server.save();
    server.kill();
    {
        // A issues the invalidation during the outage, then exits before Redis returns.
        let a = redis_cache_with_journal(&server, journal.clone());
        assert_eq!(a.invalidate_by_tag("guild:1").await, 0);
    }
    assert_eq!(journal.pending_len(), 1);
    server.restart();
    // B made no call during the outage; within its journal interval it applies A's entry.
    wait_until(
        "the journal is applied",
        Duration::from_secs(3),
        async || journal.pending_len() == 0,
    )
    .await;
    // B reads Redis again (a fail-open miss would not serve `kept`)...
    wait_until("B serves from Redis", Duration::from_secs(3), async || {
        b.get::<String>("kept").await.as_deref() == Some("v")
    })
    .await;
    // ...and never the invalidated entry.
    for _ in 0..20 {
        assert_eq!(b.get::<String>("k").await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_empty_and_null_values_are_cached() {
    for setup in Setup::all() {
        let cache = setup.cache();
        let runs = AtomicU32::new(0);
        for _ in 0..3 {
            let empty: Result<Vec<u32>, ()> = cache
                .remember("empty", Duration::from_secs(60), &["t"], || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(Vec::new())
                })
                .await;
            assert_eq!(empty, Ok(vec![]));
            let null: Result<Option<u32>, ()> = cache
                .remember("null", Duration::from_secs(60), &["t"], || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
                .await;
            assert_eq!(null, Ok(None));
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{}: each loader ran once",
            setup.name()
        );
        assert_eq!(cache.get::<Option<u32>>("null").await, Some(None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p8_eviction_never_makes_an_invalidated_value_readable() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    // L1 on, and entries written by `remember`: both tiers take part.
    let cache = redis_cache(&server);
    let value = "x".repeat(300);
    let load = |key: &str, text: String| {
        let cache = cache.clone();
        let key = key.to_string();
        async move {
            let tags = [
                format!("round:{}", key.split(':').nth(1).unwrap()),
                "all".into(),
            ];
            cache
                .remember(&key, Duration::from_secs(300), &tags, || async move {
                    Ok::<_, ()>(text)
                })
                .await
                .unwrap()
        }
    };
    for round in 0..6u32 {
        for i in 0..150u32 {
            let key = format!("entry:{round}:{i}");
            load(&key, format!("{round}:{i}:{value}")).await;
        }
        // The same tags keep being written after they were invalidated, so
        // markers are evicted, recreated and evicted again.
        cache.invalidate_by_tag(&format!("round:{round}")).await;
        if round % 2 == 1 {
            cache.invalidate_by_tag("all").await;
        }
    }
    // Filler forces evictions of entries and of tag bookkeeping alike.
    for i in 0..20_000u32 {
        cache
            .set(
                &format!("filler:{i}"),
                &value,
                tagged(Duration::from_secs(300), &["filler"]),
            )
            .await;
    }
    let evicted: u64 = server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        evicted > 1000,
        "the test must force evictions; evicted {evicted}"
    );
    // A cache that never serves anything would pass what follows: the
    // latest entries written are served.
    let mut served = 0;
    for i in 19_900..20_000u32 {
        served += u32::from(cache.get::<String>(&format!("filler:{i}")).await.is_some());
    }
    assert!(
        served > 50,
        "only {served} of the latest 100 entries served"
    );
    for round in 0..6u32 {
        for i in 0..150u32 {
            let key = format!("entry:{round}:{i}");
            assert_eq!(
                load(&key, "fresh".into()).await,
                "fresh",
                "{key} read after its tag was invalidated"
            );
        }
    }
    let l1_before = cache.stats().await.l1_hits;
    assert_eq!(load("entry:0:0", "again".into()).await, "fresh");
    assert_eq!(cache.stats().await.l1_hits, l1_before + 1, "served from L1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p9_the_in_process_store_is_bounded_in_bytes() {
    let bound = 1024 * 1024;
    let cache = Cache::new(CacheConfig {
        embedded_max_bytes: bound,
        compression_threshold: usize::MAX,
        ..CacheConfig::embedded()
    })
    .unwrap();
    let value = "y".repeat(10 * 1024);
    for i in 0..1000 {
        cache
            .set(&format!("k{i}"), &value, SetOptions::default())
            .await;
    }
    let stats = cache.stats().await;
    let held = stats.key_count * value.len() as u64;
    assert!(
        held <= bound,
        "holds {} entries of 10 KiB over a 1 MiB bound",
        stats.key_count
    );
    assert!(
        stats.key_count > 50,
        "still caches within the bound: {}",
        stats.key_count
    );
}
