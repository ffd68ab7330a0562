//! SPEC 1.2.10–13: the races and faults of a production Redis under
//! continuous traffic, each forced at the exact step with a pause point
//! (`Cache::hooks`), not hammered and hoped for. The races run on a
//! standalone Redis and on a Redis Cluster (tags on other masters than
//! their entries); the faults (a server hung, killed, restarted from a
//! snapshot) on a standalone Redis: a cluster's are failovers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use spywatcher_cache::testing::Step;
use spywatcher_cache::{Cache, CacheConfig, MemoryJournal, SetOptions};

const TTL: Duration = Duration::from_secs(300);

fn tagged(tags: &[&str]) -> SetOptions {
    SetOptions::ttl(TTL).tags(tags.iter().copied())
}

async fn remember(cache: &Cache, key: &str, tags: &[&str], value: u64) -> u64 {
    cache
        .remember(key, TTL, tags, || async move { Ok::<_, ()>(value) })
        .await
        .unwrap()
}

/// Property 13: a read whose Redis read lands between this instance's own
/// invalidation reaching L1 and reaching Redis reads the old value and
/// fills L1 with it (its fence was taken after L1 was told). The second
/// L1 step, after Redis took the invalidation, must drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_its_own_instances_invalidation_leaves_nothing_stale_in_l1() {
    for backing in Backing::each() {
        let cache = backing.cache().await;
        let other = backing.cache().await;
        let tags = backing.tags_apart("k", "guild", 1);
        let tag = [tags[0].as_str()];
        assert!(other.set("k", &1u64, tagged(&tag)).await);
        backing.assert_apart("k", &tag);

        let paused = cache.hooks().arm(Step::InvalidateBeforeStore);
        let invalidation = {
            let (cache, tag) = (cache.clone(), tags[0].clone());
            tokio::spawn(async move { cache.invalidate_by_tag(&tag).await })
        };
        paused.reached().await;
        // L1 has been told, Redis not yet: this read gets the old value (the
        // invalidation has not returned, so that is allowed) and fills L1.
        assert_eq!(remember(&cache, "k", &tag, 2).await, 1);
        paused.release();
        invalidation.await.unwrap();

        assert_eq!(cache.get::<u64>("k").await, None, "stale in L1");
        assert_eq!(remember(&cache, "k", &tag, 3).await, 3);
    }
}

/// A Redis hit fills L1 under the entry's own tags, not the reader's: an
/// invalidation of the tags the entry was written under must reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_holds_a_redis_hit_under_the_entrys_own_tags_only() {
    for backing in Backing::each() {
        let cache = backing.cache().await;
        let other = backing.cache().await;
        let tags = backing.tags_apart("k", "guild", 2);
        let (own, named) = ([tags[0].as_str()], [tags[1].as_str()]);
        assert!(other.set("k", &1u64, tagged(&own)).await);
        backing.assert_apart("k", &own);
        // Read by a caller that names other tags.
        assert_eq!(remember(&cache, "k", &named, 2).await, 1);
        cache.invalidate_by_tag(own[0]).await;
        assert_eq!(remember(&cache, "k", &named, 3).await, 3);
    }
}

/// Property 13: a caller arriving after another instance's invalidation
/// (its bus message applied here) does not join a load that began before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_after_another_instances_invalidation_does_not_join_an_older_load() {
    for backing in Backing::each() {
        older_load_on(&backing).await;
    }
}

async fn older_load_on(backing: &Backing) {
    let a = backing.cache().await;
    let b = backing.cache().await;
    let tags = backing.tags_apart("k", "guild", 1);
    let tag = [tags[0].as_str()];
    tokio::time::sleep(Duration::from_millis(200)).await; // listeners subscribed
    let probe = L1Probe::new(&b, tag[0]).await;

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let old_load = {
        let (b, tags) = (b.clone(), tags.clone());
        tokio::spawn(async move {
            b.remember("k", TTL, &tags, || async move {
                started_tx.send(()).unwrap();
                release_rx.await.unwrap();
                Ok::<_, ()>(1u64)
            })
            .await
        })
    };
    started_rx.await.unwrap();
    a.invalidate_by_tag(tag[0]).await;
    probe.wait_dropped().await;

    let joined = tokio::time::timeout(Duration::from_secs(2), remember(&b, "k", &tag, 2))
        .await
        .expect("a new load, not a wait for the old one");
    assert_eq!(
        joined, 2,
        "joined the load that began before the invalidation"
    );
    release_tx.send(()).unwrap();
    assert_eq!(old_load.await.unwrap(), Ok(1));
    assert_eq!(remember(&b, "k", &tag, 3).await, 2);
    backing.assert_apart("k", &tag);
}

/// Property 13: a leader that is cancelled gives its cross-instance lease
/// back and wakes the waiters, who load at once instead of waiting out
/// the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_releases_its_lease_and_wakes_the_other_instances() {
    for backing in Backing::each() {
        cancelled_leader_on(&backing).await;
    }
}

async fn cancelled_leader_on(backing: &Backing) {
    let config = CacheConfig {
        lock_lease: Duration::from_secs(5),
        ..backing.config()
    };
    let a = backing.cache_with(config.clone()).await;
    let b = backing.cache_with(config).await;
    let tags = backing.tags_apart("k", "guild", 1);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let (a, tags) = (a.clone(), tags.clone());
        tokio::spawn(async move {
            a.remember("k", TTL, &tags, || async move {
                started_tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok::<_, ()>(1u64)
            })
            .await
        })
    };
    started_rx.await.unwrap();
    let waiter = {
        let (b, tags) = (b.clone(), tags.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            (remember(&b, "k", &tags, 2).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort(); // the HTTP client went away
    let (value, waited) = waiter.await.unwrap();
    assert_eq!(value, 2);
    assert!(
        waited < Duration::from_secs(2),
        "the waiter waited {waited:?}: the lease (5 s) was not given back"
    );
    backing.assert_apart("k", &tags);
}

/// Property 12: while Redis hangs, an invalidation journaled by one
/// instance reaches another instance's L1 within the journal interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_hangs_the_journal_reaches_another_instances_l1() {
    let server = RedisServer::start();
    let journal = Arc::new(MemoryJournal::new());
    let a = redis_cache_with_journal(&server, journal.clone());
    let b = redis_cache_with_journal(&server, journal.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(remember(&b, "k", &["guild:1"], 1).await, 1);
    assert_eq!(remember(&b, "k", &["guild:1"], 2).await, 1, "in B's L1");

    server.pause();
    // B's reads of other keys time out: its breaker opens.
    for i in 0..5 {
        let _ = b.get::<u64>(&format!("other:{i}")).await;
    }
    assert!(b.is_degraded());
    assert_eq!(
        b.get::<u64>("k").await,
        Some(1),
        "L1 serves during the hang"
    );

    a.invalidate_by_tag("guild:1").await;
    let invalidated = Instant::now();
    assert_eq!(journal.pending_len(), 1, "journaled: Redis hangs");
    let interval = fast_config(&server).journal_interval;
    wait_until(
        "B's L1 drops the entry",
        interval + Duration::from_millis(500),
        async || b.get::<u64>("k").await.is_none(),
    )
    .await;
    println!(
        "an invalidation journaled during a hang reached the other instance's L1 in {:?} (journal interval {interval:?})",
        invalidated.elapsed()
    );
    assert_eq!(remember(&b, "k", &["guild:1"], 3).await, 3);
    server.resume();
}

/// Property 11: Redis restarted from a snapshot older than an invalidation
/// that had succeeded holds the invalidated entry again; it must never be
/// read, by the instance that saw the restart or by one started after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_an_older_snapshot_serves_nothing_invalidated_since() {
    let mut server = RedisServer::start();
    let journal = Arc::new(MemoryJournal::new());
    let cache = redis_cache_with_journal(&server, journal.clone());
    assert!(cache.set("k", &1u64, tagged(&["guild:1"])).await);
    assert!(cache.set("kept", &1u64, tagged(&["guild:2"])).await);
    server.save();
    assert!(cache.invalidate_by_tag("guild:1").await >= 1);
    assert_eq!(journal.pending_len(), 0, "Redis took it");
    assert_eq!(cache.get::<u64>("k").await, None);

    server.restart(); // SIGKILL, then start from the snapshot
    assert_eq!(
        server.cli(&["EXISTS", "spywatcher:k"]),
        "1",
        "the old entry is back"
    );
    let later = redis_cache_with_journal(&server, journal.clone());
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut reads = 0;
    while Instant::now() < deadline {
        assert_eq!(
            cache.get::<u64>("k").await,
            None,
            "stale after {reads} reads"
        );
        assert_eq!(later.get::<u64>("k").await, None, "stale on a new instance");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Caching goes on: what no invalidation touched is still served.
    wait_until("caching resumes", Duration::from_secs(2), async || {
        cache.get::<u64>("kept").await == Some(1)
    })
    .await;
    assert_eq!(remember(&cache, "k", &["guild:1"], 2).await, 2);
}

/// Property 10: invalidations that keep arriving while Redis is skipped
/// are journaled, and do not postpone recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_resumes_while_invalidations_keep_arriving() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server);
    assert!(cache.set("k", &1u64, tagged(&["guild:0"])).await);
    server.kill();
    for _ in 0..5 {
        let _ = cache.get::<u64>("k").await;
    }
    assert!(cache.is_degraded());

    // Events at 50/s, before, during and after the restart.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let events = {
        let (cache, stop) = (cache.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cache
                    .invalidate_by_tag(&format!("guild:{}", n % 5 + 1))
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();
    let answered = Instant::now();
    wait_until(
        "caching resumes while events flow",
        Duration::from_secs(3),
        async || !cache.is_degraded(),
    )
    .await;
    let recovery = answered.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = events.await.unwrap();
    let config = fast_config(&server);
    println!(
        "caching resumed {recovery:?} after Redis answered, with {sent} invalidations meanwhile (cool-down {:?}, journal interval {:?})",
        config.breaker_cooldown, config.journal_interval
    );
    assert!(
        recovery < config.breaker_cooldown + config.journal_interval + Duration::from_millis(500),
        "recovery took {recovery:?}"
    );
    assert!(cache.set("k", &2u64, tagged(&["guild:0"])).await);
    assert_eq!(cache.get::<u64>("k").await, Some(2));
}

/// Property 10, the other side: an invalidation journaled while recovery
/// has read the journal but not yet closed the breaker is applied before
/// any read reaches Redis (recovery reads the journal again rather than
/// close over it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_journaled_during_recovery_is_applied_before_reads_resume() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server);
    assert!(cache.set("k", &1u64, tagged(&["guild:1"])).await);
    server.save();
    server.kill();
    cache.invalidate_by_tag("guild:2").await; // something pending
    assert!(cache.is_degraded());

    let verifying = cache.hooks().arm(Step::JournalRead);
    server.restart();
    verifying.reached().await; // the new server is verified: [guild:2] applied
    let closing = cache.hooks().arm(Step::JournalRead);
    verifying.release();
    closing.reached().await; // recovery's last look before it closes: nothing
    assert_eq!(cache.invalidate_by_tag("guild:1").await, 0, "journaled");
    let next = cache.hooks().arm(Step::JournalRead);
    closing.release();
    next.reached().await; // the next journal read, whoever makes it
    // Whether recovery is still at it or the breaker closed, guild:1 is
    // not yet applied to Redis: no read may reach it.
    assert_eq!(
        cache.get::<u64>("k").await,
        None,
        "read before guild:1 was applied"
    );
    next.release();
    wait_until("caching resumes", Duration::from_secs(3), async || {
        !cache.is_degraded()
    })
    .await;
    assert_eq!(cache.get::<u64>("k").await, None);
    assert_eq!(remember(&cache, "k", &["guild:1"], 2).await, 2);
}
