//! A tag-aware cache-aside layer on Redis or an in-process store.
//!
//! It knows nothing of what it caches: keys are strings, values anything
//! serde can carry, tags group entries for invalidation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use spywatcher_cache::{Cache, CacheConfig};
//!
//! let cache = Cache::new(CacheConfig::redis("redis://127.0.0.1:6379"))?;
//! let rows: Vec<String> = cache
//!     .remember("report:42", Duration::from_secs(300), &["team:42"], || async {
//!         Ok::<_, std::io::Error>(vec!["computed".to_string()])
//!     })
//!     .await?;
//! cache.invalidate_by_tag("team:42").await; // O(1), whatever the number of entries
//! # Ok(()) }
//! ```
//!
//! # What holds (SPEC 1.2)
//! TTLs are honoured; an invalidated tag's entries are never read again,
//! whatever their TTLs; a loader that started before an invalidation does not
//! store its result, and a caller arriving after it does not join that load;
//! one loader runs per missing key in a process; with Redis down every call
//! is a miss or a skipped write costing microseconds once the breaker is
//! open, and caching resumes however many invalidations keep arriving;
//! invalidations that could not reach Redis are journaled and applied before
//! Redis is read again, and the journal's window is replayed into a Redis
//! that comes back with older data (a new `run_id`); the L1 tier follows the
//! journal even while Redis is skipped, and is emptied when its subscriber
//! is subscribed again; `null` and empty values are cached; eviction loses
//! values, never makes stale ones readable; the in-process store is bounded
//! in bytes of what its entries really cost (`store/embedded/cost.rs`), and
//! counts what the bound evicts.
//!
//! # Layout
//! - [`cache`]: the [`Cache`] API and the fail-open policy around the store;
//!   `remember` (cache-or-load) in `remember.rs`; the order of an
//!   invalidation (L1, Redis, L1 again, the bus, the journal) in
//!   `invalidation.rs`.
//! - `store/`: where entries live. `store::embedded` (moka, tag version
//!   cells, the cost of an entry in `store/embedded/cost.rs`) and `store::redis` (Lua scripts in `store/redis/scripts/`, key layout in
//!   `store/redis/keys.rs`; reads check tag markers held in process and kept
//!   exact by Redis client tracking, `store/redis/tracking.rs`; calls go
//!   only to a server whose identity was verified, `store/redis/link.rs`).
//! - `codec`: values to bytes (JSON with its digest, LZ4 above a threshold)
//!   and the envelope that records an entry's tag versions in Redis.
//! - `grace`: expire by tag, [`Cache::remember_json_graced`]: a stale
//!   value served within a grace while one refresh runs.
//! - `flight`: one loader per missing key in a process; `lock`: one per
//!   expiry across the processes that share Redis; `fence`: what a fill or
//!   a joining caller must find unchanged.
//! - `breaker`: the circuit breaker in front of Redis.
//! - [`journal`]: every invalidation, pending until Redis took it and kept
//!   for a window after, and the [`Journal`] trait for a durable one.
//! - `l1`: the in-process tier in front of Redis, kept coherent across
//!   instances by invalidation messages.
//! - [`pubsub`]: publish/subscribe on Redis or a Redis Cluster (one
//!   subscriber connection, to one node at a time, owned by one task that
//!   re-subscribes after reconnects and delivers in order; every PUBLISH of
//!   a service through one node, `pubsub/publisher.rs`) or in process.
//! - `maintenance`: the background task that verifies servers, probes,
//!   applies the journal (to Redis and to L1) and reclaims memory.
//! - `testing`: pause points that let tests force an interleaving.
//! - [`stats`]: the counters behind [`Cache::stats`].
//! - [`insights`]: what the cache learns of its workload (entry lifetimes,
//!   miss costs, what a grace would serve) and the settings it suggests.
//! - [`config`]: every knob, durations included, so tests run in seconds.

mod breaker;
pub mod cache;
mod codec;
pub mod config;
pub mod error;
mod fence;
mod flight;
mod glob;
mod grace;
pub mod insights;
mod invalidation;
pub mod journal;
mod l1;
mod lock;
mod maintenance;
pub mod pubsub;
mod remember;
pub mod stats;
mod store;
#[doc(hidden)]
pub mod testing;

pub use cache::{Cache, CachedJson, Origin, SetOptions};
pub use config::{Backend, CacheConfig};
pub use error::{ConfigError, JournalError};
pub use insights::{InsightsReport, Setting, Suggestion, TypeInsights};
pub use journal::{Journal, JournalEntry, MemoryJournal, PendingInvalidation, now_ms};
pub use pubsub::{Message, PubSub, Subscription};
pub use stats::{CacheStats, MasterStats, Staleness, TypeStats};
pub use store::MasterHealth;

/// The exact `redis` connection set-up of the Redis store, for benchmarks
/// that compare the cache with raw commands on the same kind of connection.
#[doc(hidden)]
pub use store::redis::connection_config as redis_connection_config;

/// A connection of the exact `redis` cluster client set-up of the Redis
/// Cluster store (retries, retry waits, connection and response timeouts:
/// `store/redis/cluster/client.rs`), for benchmarks that compare the cache
/// with raw commands on the same kind of connection.
#[doc(hidden)]
pub async fn redis_cluster_connection(
    nodes: &[String],
    connect_timeout: std::time::Duration,
    op_timeout: std::time::Duration,
) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
    store::redis::LazyCluster::new(nodes, connect_timeout, op_timeout)?
        .connection()
        .await
}
