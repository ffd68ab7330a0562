//! Settings of a [`Cache`](crate::Cache). Every duration is configuration so
//! that tests can run outages and TTLs in seconds.

use std::time::Duration;

/// Where entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An in-process store bounded in bytes: no set-up, one process.
    Embedded,
    /// A standalone Redis: `redis://[:password@]host:port[/db]` or `rediss://` for TLS.
    Redis { url: String },
    /// A Redis Cluster, reached through any of its nodes:
    /// `redis://[:password@]host:port` each, or `rediss://` for TLS. The
    /// rest of the cluster is discovered from them.
    RedisCluster { nodes: Vec<String> },
}

/// How a [`Cache`](crate::Cache) behaves. `CacheConfig::default()` is the
/// embedded store with the defaults of SPEC 1.1.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: Backend,
    /// Every key, and the bookkeeping of tags, lives under this prefix.
    pub prefix: String,
    /// TTL of `set` when none is given.
    pub default_ttl: Duration,
    /// Values whose JSON is larger than this many bytes are stored compressed.
    pub compression_threshold: usize,
    /// Bound of the embedded store, in bytes of what its entries cost the
    /// process: keys, values, tags and bookkeeping.
    pub embedded_max_bytes: u64,
    /// Bound of the in-process L1 tier in front of Redis, in bytes; 0 turns
    /// L1 off. (Unused by the embedded store, which is in process already.)
    pub l1_max_bytes: u64,
    /// How long another instance's load is waited for before loading here,
    /// and the lease of the loading lock.
    pub lock_lease: Duration,
    /// Budget of one Redis call; past it the call counts as failed.
    pub op_timeout: Duration,
    /// Budget of establishing a Redis connection.
    pub connect_timeout: Duration,
    /// Consecutive failed Redis calls that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips Redis before probing it again.
    pub breaker_cooldown: Duration,
    /// How often the pending-invalidation journal is checked, and how long
    /// an instance that never lost Redis may serve a value whose invalidation
    /// another instance could only journal.
    pub journal_interval: Duration,
    /// How long invalidations are kept in the journal after they were
    /// applied: at least the longest TTL of any entry. A Redis that comes
    /// back with older data (a restart from an older snapshot, a failover)
    /// gets the whole window applied again before reads resume; an entry
    /// older than the window has expired anyway.
    pub journal_retention: Duration,
    /// Stale entries under an invalidated tag are deleted in batches of this
    /// many keys, so that reclaiming memory never stalls Redis: on a busy
    /// two-core machine a batch of 20 ran for at most 2.3 ms, 50 for 4.3 ms
    /// and 500 for 9 ms (see BENCHMARKS.md). The sweep paces itself by time,
    /// not batches, so smaller batches reclaim about as fast.
    pub sweep_batch: usize,
    /// With Redis: about how many entries' tags this process remembers so
    /// that a read costs one round trip (one `MGET` of the entry and its
    /// tags' markers) and no script. A fixed table (12 bytes a slot, 3 MiB at
    /// the default, plus about 200 bytes per hint held: key and marker names).
    /// Keep it at twice the entries read often, or more: near full, hints
    /// replace each other and reads take two round trips. 0 keeps no hints.
    pub redis_read_hints: usize,
    /// With Redis: how many tags' markers this process may hold, kept exact
    /// by Redis' client tracking (see `store/redis/tracking.rs`), so that a
    /// cached read is one `GET`. Beyond it, reads of further tags check
    /// their markers in Redis. 0: no tracked connection; every read checks
    /// its markers in Redis (`redis_read_hints`).
    pub redis_tracked_markers: usize,
    /// Key prefixes (after `prefix`) whose hits and misses are counted
    /// separately in [`CacheStats::by_type`](crate::CacheStats), e.g.
    /// `analytics:ghosts`.
    pub stat_groups: Vec<String>,
    /// Entries whose life the insights track at most (`insights/lives.rs`):
    /// about 300 bytes each. Past it, new entries are stored untracked
    /// (and counted so).
    pub insights_capacity: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: Backend::Embedded,
            prefix: "spywatcher:".to_string(),
            default_ttl: Duration::from_secs(300),
            compression_threshold: 1024,
            embedded_max_bytes: 64 * 1024 * 1024,
            l1_max_bytes: 32 * 1024 * 1024,
            lock_lease: Duration::from_secs(5),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(500),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(1),
            journal_interval: Duration::from_secs(1),
            journal_retention: Duration::from_secs(15 * 60),
            sweep_batch: 20,
            redis_read_hints: 262_144,
            redis_tracked_markers: 65_536,
            stat_groups: Vec::new(),
            insights_capacity: 10_000,
        }
    }
}

impl CacheConfig {
    /// The defaults, on a standalone Redis.
    pub fn redis(url: impl Into<String>) -> Self {
        CacheConfig {
            backend: Backend::Redis { url: url.into() },
            ..CacheConfig::default()
        }
    }

    /// The defaults, on a Redis Cluster reached through `nodes` (URLs).
    pub fn redis_cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CacheConfig {
            backend: Backend::RedisCluster {
                nodes: nodes.into_iter().map(Into::into).collect(),
            },
            ..CacheConfig::default()
        }
    }

    pub fn embedded() -> Self {
        CacheConfig::default()
    }
}
