//! Expire by tag (`Cache::remember_json_graced`, SPEC 7): the grace mode's
//! own properties, on every store (a standalone Redis on each read path,
//! a Redis Cluster, the embedded store), as the README states them:
//!
//! - G1 a read within the grace of an invalidated entry gets the previous
//!   value at once, marked stale with its age, while one refresh runs;
//! - G2 past the grace (measured from the start of the load that produced
//!   the value) it is a miss: the reader waits for the loader;
//! - G3 one refresh per key, across instances too;
//! - G4 a refresh that fails leaves the stale value served within the
//!   grace, never beyond;
//! - G5 reads without a grace never see a stale value;
//! - G6 clearing the cache removes the stale values too;
//! - G7 a refresh overtaken by an invalidation stores no fresh entry.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use spywatcher_cache::testing::Step;
use spywatcher_cache::{Cache, Origin};
use tokio::sync::Semaphore;

const TTL: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

/// A loader that counts its runs and returns the run's number (1, 2, ...),
/// each run waiting for a permit of `gate` first.
#[derive(Clone)]
struct Loader {
    runs: Arc<AtomicU32>,
    gate: Arc<Semaphore>,
    fail: bool,
}

impl Loader {
    fn open() -> Loader {
        let loader = Loader::gated();
        loader.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        loader
    }

    fn gated() -> Loader {
        Loader {
            runs: Arc::new(AtomicU32::new(0)),
            gate: Arc::new(Semaphore::new(0)),
            fail: false,
        }
    }

    fn failing(mut self) -> Loader {
        self.fail = true;
        self
    }

    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }

    fn call(&self) -> impl Future<Output = Result<u32, String>> + Send + 'static {
        let (runs, gate, fail) = (self.runs.clone(), self.gate.clone(), self.fail);
        async move {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            gate.acquire().await.expect("gate open").forget();
            if fail {
                Err(format!("run {run} failed"))
            } else {
                Ok(run)
            }
        }
    }
}

async fn read(
    cache: &Cache,
    key: &str,
    tag: &str,
    grace: Duration,
    loader: &Loader,
) -> Result<(u32, Origin), String> {
    let call = loader.call();
    let (json, origin) = cache
        .remember_json_graced(key, TTL, grace, &[tag], move || call)
        .await?;
    let value = serde_json::from_slice(&json.bytes).expect("a number");
    Ok((value, origin))
}

fn is_stale(origin: Origin) -> bool {
    matches!(origin, Origin::Stale { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_g3_within_the_grace_the_previous_value_at_once_and_one_refresh() {
    for setup in Setup::all() {
        let (cache, name) = (setup.cache(), setup.name());
        let tag = &setup.tags_apart("k", "guild", 1)[0];
        let loader = Loader::gated();
        loader.gate.add_permits(1);
        assert_eq!(
            read(cache, "k", tag, GRACE, &loader).await,
            Ok((1, Origin::Loader)),
            "{name}"
        );
        assert_eq!(
            read(cache, "k", tag, GRACE, &loader).await,
            Ok((1, Origin::Cache)),
            "{name}"
        );
        setup.assert_apart("k", &[tag]);

        cache.invalidate_by_tag(tag).await;
        // The refresh's loader waits at the gate: every reader must still
        // be answered, with the previous value, marked stale.
        let readers: Vec<_> = (0..20)
            .map(|_| {
                let (cache, tag, loader) = (cache.clone(), tag.clone(), loader.clone());
                tokio::spawn(async move { read(&cache, "k", &tag, GRACE, &loader).await })
            })
            .collect();
        for reader in readers {
            let (value, origin) = reader.await.unwrap().unwrap();
            assert_eq!(value, 1, "{name}: the previous value");
            match origin {
                Origin::Stale { age } => assert!(age <= GRACE, "{name}: {age:?}"),
                other => panic!("{name}: {other:?}, not stale"),
            }
        }
        wait_until("the refresh started", Duration::from_secs(5), async || {
            loader.runs() == 2
        })
        .await;
        let stats = cache.stats().await;
        assert_eq!((stats.stale, stats.refreshes), (20, 1), "{name}");
        assert!(
            stats.staleness.max_ms <= GRACE.as_millis() as u64,
            "{name}: {:?}",
            stats.staleness
        );
        assert_eq!(stats.by_type["other"].stale, 20, "{name}");
        loader.gate.add_permits(1);
        wait_until("the refresh landed", Duration::from_secs(5), async || {
            read(cache, "k", tag, GRACE, &loader).await == Ok((2, Origin::Cache))
        })
        .await;
        assert_eq!(loader.runs(), 2, "{name}: one refresh for 20 stale reads");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_past_the_grace_a_read_waits_for_the_loader() {
    let grace = Duration::from_millis(600);
    for setup in Setup::all() {
        let (cache, name) = (setup.cache(), setup.name());
        let loader = Loader::open();
        assert_eq!(
            read(cache, "k", "t", grace, &loader).await,
            Ok((1, Origin::Loader))
        );
        tokio::time::sleep(grace + Duration::from_millis(100)).await;
        cache.invalidate_by_tag("t").await;
        assert_eq!(
            read(cache, "k", "t", grace, &loader).await,
            Ok((2, Origin::Loader)),
            "{name}: a value older than the grace is not served"
        );

        // The grace counts from the loader's start, not from the store.
        let slow = Loader::gated();
        let started = tokio::spawn({
            let (cache, slow) = (cache.clone(), slow.clone());
            async move { read(&cache, "slow", "t2", grace, &slow).await }
        });
        wait_until("the load started", Duration::from_secs(5), async || {
            slow.runs() == 1
        })
        .await;
        tokio::time::sleep(grace - Duration::from_millis(200)).await;
        slow.gate.add_permits(1);
        assert_eq!(started.await.unwrap(), Ok((1, Origin::Loader)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        cache.invalidate_by_tag("t2").await;
        slow.gate.add_permits(1);
        assert_eq!(
            read(cache, "slow", "t2", grace, &slow).await,
            Ok((2, Origin::Loader)),
            "{name}: the value's data is older than the grace, though stored less than it ago"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g3_one_refresh_across_instances() {
    for backing in Backing::each() {
        let (a, b) = (backing.cache().await, backing.cache().await);
        let tag = &backing.tags_apart("k", "guild", 1)[0];
        let loader = Loader::gated();
        loader.gate.add_permits(1);
        assert_eq!(
            read(&a, "k", tag, GRACE, &loader).await,
            Ok((1, Origin::Loader))
        );
        a.invalidate_by_tag(tag).await;
        wait_until(
            "B no longer reads the entry",
            Duration::from_secs(5),
            async || b.get_json("k").await.is_none(),
        )
        .await;
        let (on_a, on_b) = tokio::join!(
            read(&a, "k", tag, GRACE, &loader),
            read(&b, "k", tag, GRACE, &loader)
        );
        assert!(
            is_stale(on_a.unwrap().1) && is_stale(on_b.unwrap().1),
            "{}",
            backing.name()
        );
        // Both instances started a refresh; the lease lets one load.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            loader.runs(),
            2,
            "{}: one refresh's loader runs",
            backing.name()
        );
        loader.gate.add_permits(1);
        for cache in [&a, &b] {
            wait_until("the refresh landed", Duration::from_secs(5), async || {
                read(cache, "k", tag, GRACE, &loader).await == Ok((2, Origin::Cache))
            })
            .await;
        }
        assert_eq!(
            loader.runs(),
            2,
            "{}: one load for both instances",
            backing.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g4_a_failed_refresh_serves_stale_within_the_grace_then_the_error() {
    let grace = Duration::from_millis(800);
    for setup in Setup::all() {
        let (cache, name) = (setup.cache(), setup.name());
        assert_eq!(
            read(cache, "k", "t", grace, &Loader::open()).await,
            Ok((1, Origin::Loader))
        );
        cache.invalidate_by_tag("t").await;
        let failing = Loader::open().failing();
        let (value, origin) = read(cache, "k", "t", grace, &failing).await.unwrap();
        assert!(value == 1 && is_stale(origin), "{name}: {origin:?}");
        wait_until("the refresh failed", Duration::from_secs(5), async || {
            failing.runs() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (value, origin) = read(cache, "k", "t", grace, &failing).await.unwrap();
        assert!(
            value == 1 && is_stale(origin),
            "{name}: still stale after a failed refresh"
        );
        tokio::time::sleep(grace).await;
        assert_eq!(
            read(cache, "k", "t", grace, &failing).await.map(|(v, _)| v),
            Err(format!("run {} failed", failing.runs())),
            "{name}: past the grace the loader's error"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g5_g6_strict_reads_and_a_cleared_cache_never_see_a_stale_value() {
    for setup in Setup::all() {
        let (cache, name) = (setup.cache(), setup.name());
        let loader = Loader::open();
        assert_eq!(
            read(cache, "a:k", "t", GRACE, &loader).await,
            Ok((1, Origin::Loader))
        );
        cache.invalidate_by_tag("t").await;
        assert_eq!(cache.get_json("a:k").await, None, "{name}: get");
        assert_eq!(
            read(cache, "a:k", "t", Duration::ZERO, &loader).await,
            Ok((2, Origin::Loader)),
            "{name}: remember without a grace"
        );

        for clear in ["pattern", "flush"] {
            cache.invalidate_by_tag("t").await;
            match clear {
                "pattern" => cache.clear_pattern("a:*").await,
                _ => cache.flush_all().await,
            };
            let runs = loader.runs();
            assert_eq!(
                read(cache, "a:k", "t", GRACE, &loader).await,
                Ok((runs + 1, Origin::Loader)),
                "{name}: after a {clear} clear"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g7_a_refresh_overtaken_by_an_invalidation_stores_no_fresh_entry() {
    for setup in Setup::all() {
        let (cache, name) = (setup.cache(), setup.name());
        let loader = Loader::open();
        assert_eq!(
            read(cache, "k", "t", GRACE, &loader).await,
            Ok((1, Origin::Loader))
        );
        cache.invalidate_by_tag("t").await;
        let paused = cache.hooks().arm(Step::LoaderDone);
        let (_, origin) = read(cache, "k", "t", GRACE, &loader).await.unwrap();
        assert!(is_stale(origin), "{name}");
        // The refresh loaded run 2 and stopped before storing it; an event
        // makes run 2 stale too.
        paused.reached().await;
        cache.invalidate_by_tag("t").await;
        paused.release();
        wait_until("the refresh ended", Duration::from_secs(5), async || {
            cache.stats().await.refreshes == 1 && loader.runs() == 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (value, origin) = read(cache, "k", "t", GRACE, &loader).await.unwrap();
        assert!(
            is_stale(origin),
            "{name}: run {value} was stored fresh ({origin:?}) though invalidated while it loaded"
        );
    }
}
