//! What every cache test needs: a cache on a private redis-server, on a
//! real Redis Cluster (`backing.rs`), or an embedded one, with short
//! timeouts so outages take milliseconds.
#![allow(dead_code)]

mod backing;

use std::sync::Arc;
use std::time::Duration;

use spywatcher_cache::{Cache, CacheConfig, Journal, MemoryJournal};
pub use spywatcher_testkit::cluster::RedisCluster;
pub use spywatcher_testkit::redis::RedisServer;

pub use self::backing::Backing;

pub fn fast_config(server: &RedisServer) -> CacheConfig {
    CacheConfig {
        op_timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(100),
        breaker_cooldown: Duration::from_millis(200),
        journal_interval: Duration::from_millis(200),
        ..CacheConfig::redis(server.url())
    }
}

/// [`fast_config`] on a real 3+3 Redis Cluster.
pub fn cluster_config(cluster: &RedisCluster) -> CacheConfig {
    CacheConfig {
        op_timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(100),
        breaker_cooldown: Duration::from_millis(200),
        journal_interval: Duration::from_millis(200),
        ..CacheConfig::redis_cluster(cluster.nodes().iter().map(|n| format!("redis://{n}")))
    }
}

pub fn redis_cache(server: &RedisServer) -> Cache {
    Cache::new(fast_config(server)).expect("cache on private redis")
}

pub fn redis_cache_with_journal(server: &RedisServer, journal: Arc<MemoryJournal>) -> Cache {
    Cache::with_journal(fast_config(server), journal as Arc<dyn Journal>).expect("cache")
}

pub fn embedded_cache() -> Cache {
    Cache::new(CacheConfig::embedded()).expect("embedded cache")
}

/// A private Redis and a cache on it, or an embedded cache: the properties
/// that hold for both stores run once per store, and on Redis once per read
/// path (through the L1 tier, or straight to Redis with the markers held in
/// process, or with the markers read in Redis on every read).
pub enum Setup {
    Redis(RedisServer, Cache, &'static str),
    /// On the test binary's shared cluster, under a prefix of its own.
    Cluster(Backing, Cache, &'static str),
    Embedded(Cache),
}

impl Setup {
    pub fn all() -> Vec<Setup> {
        let redis = |name, config: fn(&RedisServer) -> CacheConfig| {
            let server = RedisServer::start();
            let cache = Cache::new(config(&server)).expect("cache on private redis");
            Setup::Redis(server, cache, name)
        };
        vec![
            redis("redis", fast_config),
            redis("redis, no L1, tracked markers", |server| CacheConfig {
                l1_max_bytes: 0,
                ..fast_config(server)
            }),
            redis("redis, no L1, markers read each time", |server| {
                CacheConfig {
                    l1_max_bytes: 0,
                    redis_tracked_markers: 0,
                    ..fast_config(server)
                }
            }),
            Setup::Embedded(embedded_cache()),
            {
                let cluster = Backing::cluster();
                let cache = Cache::new(cluster.config()).expect("cache on a cluster");
                Setup::Cluster(cluster, cache, "redis cluster")
            },
        ]
    }

    pub fn cache(&self) -> &Cache {
        match self {
            Setup::Redis(_, cache, _) | Setup::Cluster(_, cache, _) | Setup::Embedded(cache) => {
                cache
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Setup::Redis(_, _, name) | Setup::Cluster(_, _, name) => name,
            Setup::Embedded(_) => "embedded",
        }
    }

    /// `n` tags for entry `key`: on the cluster, each on another master
    /// than the entry ([`Backing::tags_apart`]); `<base>:1`... elsewhere.
    pub fn tags_apart(&self, key: &str, base: &str, n: usize) -> Vec<String> {
        match self {
            Setup::Cluster(backing, _, _) => backing.tags_apart(key, base, n),
            _ => (1..=n).map(|i| format!("{base}:{i}")).collect(),
        }
    }

    /// On the cluster, asserts the entry and its tags' markers are stored
    /// on different masters ([`Backing::assert_apart`]).
    pub fn assert_apart(&self, key: &str, tags: &[impl AsRef<str>]) {
        if let Setup::Cluster(backing, _, _) = self {
            backing.assert_apart(key, tags);
        }
    }
}

pub async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {within:?} waiting until {what}");
}

/// An entry held in a cache's L1 under a tag, to see when another
/// instance's invalidation of that tag has been applied there.
pub struct L1Probe {
    cache: Cache,
}

impl L1Probe {
    pub async fn new(cache: &Cache, tag: &str) -> L1Probe {
        let (ttl, tags) = (Duration::from_secs(300), [tag]);
        let first = cache.remember("probe", ttl, &tags, || async { Ok::<_, ()>(1u64) });
        assert_eq!(first.await, Ok(1));
        let l1_hits = cache.stats().await.l1_hits;
        let again = cache.remember("probe", ttl, &tags, || async { Ok::<_, ()>(2u64) });
        assert_eq!(again.await, Ok(1));
        assert_eq!(
            cache.stats().await.l1_hits,
            l1_hits + 1,
            "the probe is in L1"
        );
        L1Probe {
            cache: cache.clone(),
        }
    }

    /// Waits until the probe is gone from L1 (and Redis).
    pub async fn wait_dropped(&self) {
        wait_until(
            "the invalidation reached this instance",
            Duration::from_secs(2),
            async || self.cache.get::<u64>("probe").await.is_none(),
        )
        .await;
    }
}
