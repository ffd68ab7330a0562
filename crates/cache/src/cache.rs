//! [`Cache`]: the public API (SPEC 1.1) and the fail-open policy around the store.
//!
//! Every Redis call goes through [`Inner::redis_call`]: skipped while the
//! circuit breaker is open, bounded by a timeout otherwise, and counted. A
//! read that fails is a miss; a write that fails is skipped; an invalidation
//! that fails is journaled and trips the breaker, so that no read reaches
//! Redis again before the journal has been applied there.
//!
//! `remember` lives in `remember.rs`; the order of an invalidation (L1,
//! Redis, L1 again, the bus, the journal) in `invalidation.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::breaker::Breaker;
use crate::codec::{self, Encoded};
use crate::config::{Backend, CacheConfig};
use crate::error::{ConfigError, StoreError};
use crate::fence::{Fence, KeyInvalidations};
use crate::flight::Flights;
use crate::grace::Refreshing;
use crate::insights::lives::ReadMark;
use crate::insights::{self, Insights, Read};
use crate::journal::{Journal, MemoryJournal, PendingInvalidation};
use crate::l1::L1;
use crate::lock::FillWaiters;
use crate::maintenance;
use crate::pubsub::PubSub;
use crate::stats::{CacheStats, Counters, ServerFigures, Tier};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::{Lookup, Store, Versions};
use crate::testing::{Hooks, Step};

/// Options of [`Cache::set`]: TTL (default from the config) and tags.
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    pub ttl: Option<Duration>,
    pub tags: Vec<String>,
}

impl SetOptions {
    pub fn ttl(ttl: Duration) -> Self {
        SetOptions {
            ttl: Some(ttl),
            tags: Vec::new(),
        }
    }

    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// JSON as the cache holds it, with the digest (xxh3-64) of its bytes taken
/// once when it was stored: a strong validator, such as an HTTP `ETag`, that
/// costs nothing to produce on a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedJson {
    pub bytes: Bytes,
    pub digest: u64,
}

impl CachedJson {
    /// `value` as JSON with its digest, as the cache would hold it: for a
    /// caller that serves a value without caching it.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<CachedJson, serde_json::Error> {
        let bytes = Bytes::from(serde_json::to_vec(value)?);
        Ok(CachedJson {
            digest: codec::digest(&bytes),
            bytes,
        })
    }
}

/// Where the value returned by [`Cache::remember_json`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It was in the cache.
    Cache,
    /// Another caller in this process was loading it; this one waited.
    Flight,
    /// This call ran the loader.
    Loader,
    /// The entry was invalidated; this is the value it held, `age` after
    /// its loader started (within the grace), and a refresh is under way
    /// ([`Cache::remember_json_graced`]).
    Stale { age: Duration },
}

impl Origin {
    /// Whether the value was served from the cache (for `X-Cache: hit`).
    pub fn is_hit(self) -> bool {
        self == Origin::Cache
    }
}

/// A cache-aside store with tags, on Redis or in process. Cheap to clone:
/// clones share everything.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: CacheConfig,
    pub store: Store,
    pub counters: Counters,
    pub breaker: Arc<Breaker>,
    pub journal: Arc<dyn Journal>,
    pub flights: Flights,
    /// Key invalidations, for the fences (`fence.rs`).
    pub keys: Arc<KeyInvalidations>,
    /// Wakes the maintenance task when the breaker trips.
    pub wake: Arc<Notify>,
    pub pubsub: PubSub,
    /// The in-process tier in front of Redis (None when embedded). With L1
    /// turned off it holds no entries but still fences loads.
    pub l1: Option<Arc<L1>>,
    /// Callers waiting for another instance's load (Redis only).
    pub fill_waiters: Option<Arc<FillWaiters>>,
    /// Pause points for tests (`testing.rs`).
    pub hooks: Arc<Hooks>,
    /// Graced entries being refreshed in the background (`grace.rs`).
    pub refreshing: Refreshing,
    /// What the cache learns of its workload (`insights/`).
    pub insights: Arc<Insights>,
}

impl Cache {
    /// A cache with an in-memory journal. Must be called within a Tokio
    /// runtime: with Redis, a maintenance task probes, applies the journal
    /// and reclaims memory in the background.
    pub fn new(config: CacheConfig) -> Result<Cache, ConfigError> {
        Self::with_journal(config, Arc::new(MemoryJournal::new()))
    }

    /// A cache whose pending invalidations go to `journal`, which other
    /// caches (other processes, with a durable journal) may share.
    pub fn with_journal(
        config: CacheConfig,
        journal: Arc<dyn Journal>,
    ) -> Result<Cache, ConfigError> {
        if config.prefix.is_empty() || config.prefix.contains(['*', '?', '[', ']']) {
            return Err(ConfigError::Prefix(config.prefix.clone()));
        }
        let breaker = Arc::new(Breaker::new(config.breaker_threshold));
        let hooks = Arc::new(Hooks::default());
        let store = match &config.backend {
            Backend::Embedded => Store::Embedded(EmbeddedStore::new(config.embedded_max_bytes)),
            Backend::Redis { url } => Store::Redis(Box::new(RedisStore::new(
                url,
                &config.prefix,
                config.connect_timeout,
                config.redis_read_hints,
                config.redis_tracked_markers,
            )?)),
            Backend::RedisCluster { nodes } => {
                if config.prefix.contains(['{', '}']) {
                    return Err(ConfigError::ClusterPrefix(config.prefix.clone()));
                }
                Store::Redis(Box::new(RedisStore::cluster(
                    nodes,
                    &config.prefix,
                    config.connect_timeout,
                    config.op_timeout,
                    config.redis_read_hints,
                )?))
            }
        };
        let pubsub_breaker = match &config.backend {
            // Not the cache's breaker: it opens when one shard fails, while
            // the bus (any node) still carries the news other instances need
            // most then: an invalidation that shard could not take (`l1.rs`,
            // `pending`).
            Backend::RedisCluster { .. } => Arc::new(Breaker::new(u32::MAX)),
            _ => breaker.clone(),
        };
        let pubsub = PubSub::on_backend(&config, pubsub_breaker, hooks.clone())?;
        let keys = Arc::new(KeyInvalidations::default());
        let insights = Arc::new(Insights::new(&config.stat_groups, config.insights_capacity));
        let inner = Arc::new(Inner {
            counters: Counters::new(&config.stat_groups),
            breaker,
            journal,
            flights: Flights::default(),
            wake: Arc::new(Notify::new()),
            fill_waiters: match &store {
                Store::Redis(_) => Some(FillWaiters::new(&pubsub)),
                Store::Embedded(_) => None,
            },
            l1: match &store {
                Store::Redis(_) => {
                    Some(L1::new(config.l1_max_bytes, keys.clone(), insights.clone()))
                }
                Store::Embedded(_) => None,
            },
            keys,
            hooks,
            refreshing: Refreshing::default(),
            insights,
            store,
            pubsub,
            config,
        });
        if matches!(inner.store, Store::Redis(_)) {
            maintenance::spawn(&inner);
        }
        if let Some(l1) = &inner.l1 {
            let (breaker, wake) = (inner.breaker.clone(), inner.wake.clone());
            let on_pending = Arc::new(move || {
                if breaker.trip() {
                    warn!(
                        "another instance journaled an invalidation Redis did not take: skipping Redis until the journal is applied"
                    );
                    wake.notify_one();
                }
                // Counted, so that a recovery under way reads the journal again.
                breaker.journaled();
            });
            l1.spawn_listener(inner.pubsub.clone(), on_pending);
        }
        Ok(Cache { inner })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Pause points, for tests that force an interleaving (`testing.rs`).
    #[doc(hidden)]
    pub fn hooks(&self) -> &Hooks {
        &self.inner.hooks
    }

    /// `redis`, `redis-cluster` or `embedded`.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.store {
            Store::Embedded(_) => "embedded",
            Store::Redis(store) => store.kind(),
        }
    }

    /// True while Redis is being skipped (breaker open): the cache answers
    /// misses and the caller's loaders carry the load.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Asks Redis for a PONG within the call timeout (always true when embedded).
    pub async fn ping(&self) -> bool {
        match &self.inner.store {
            Store::Embedded(_) => true,
            Store::Redis(redis) => tokio::time::timeout(self.inner.config.op_timeout, redis.ping())
                .await
                .is_ok_and(|r| r.is_ok()),
        }
    }

    /// On a Redis Cluster, each master and whether it answers now (empty
    /// for other stores, and when the cluster's map cannot be read within
    /// the call timeout: then no master is known to be up).
    pub async fn masters(&self) -> Vec<crate::MasterHealth> {
        let Store::Redis(redis) = &self.inner.store else {
            return Vec::new();
        };
        // The map may have to be read first, then every master answers.
        let budget = self.inner.config.op_timeout * 3;
        match tokio::time::timeout(budget, redis.masters()).await {
            Ok(Ok(masters)) => masters,
            _ => Vec::new(),
        }
    }

    /// The value under `key`, or `None` (absent, expired, invalidated, or the
    /// store unreachable).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let encoded = self.inner.fetch(key, None).await?;
        decode_or_warn(key, &encoded)
    }

    /// The JSON stored under `key`, as bytes: for callers that pass cached
    /// JSON on without deserializing it.
    pub async fn get_json(&self, key: &str) -> Option<CachedJson> {
        let encoded = self.inner.fetch(key, None).await?;
        json_of(key, &encoded)
    }

    /// Stores `value` under `key`. Returns whether it was stored (false when
    /// the store is unreachable or the value cannot be serialized).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: SetOptions,
    ) -> bool {
        let Some(encoded) = self.inner.encode(key, value) else {
            return false;
        };
        let ttl = options.ttl.unwrap_or(self.inner.config.default_ttl);
        let stored = self
            .inner
            .store_encoded(key, &encoded, ttl, &options.tags, None, None)
            .await;
        self.inner.replaced(vec![key.to_string()]).await;
        stored
    }

    pub async fn delete(&self, key: &str) -> bool {
        self.delete_many(&[key]).await > 0
    }

    pub async fn delete_many<S: AsRef<str>>(&self, keys: &[S]) -> u64 {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_string()).collect();
        let deleted = self
            .inner
            .invalidate(PendingInvalidation::Keys { keys }, None)
            .await
            .map_or(0, |counts| counts.iter().sum());
        Counters::add(&self.inner.counters.deletes, deleted);
        deleted
    }

    /// Invalidates one tag (see [`invalidate_by_tags`](Self::invalidate_by_tags)),
    /// and logs at INFO the line operators of the reference design expect,
    /// `Invalidated N cache entries for tag: T`: an operator's action.
    pub async fn invalidate_by_tag(&self, tag: &str) -> u64 {
        let tags = vec![tag.to_string()];
        let counts = self.invalidate_tags(&tags, None).await;
        match counts.as_deref() {
            Some([n]) => info!("Invalidated {n} cache entries for tag: {tag}"),
            _ => info!("Invalidation of tag: {tag} journaled until Redis answers"),
        }
        counts.map_or(0, |counts| counts.iter().sum())
    }

    /// Makes every entry stored under any of `tags` unreadable, in O(1)
    /// round trips whatever their number. Returns how many entries were
    /// recorded under the tags: an upper bound, as it counts entries that
    /// may since have expired or been overwritten. With Redis unreachable,
    /// the invalidation is journaled and 0 is returned.
    ///
    /// Logs each tag at DEBUG only: a batch of events can invalidate tens of
    /// thousands of tags, and the caller knows what to summarise.
    pub async fn invalidate_by_tags<S: AsRef<str>>(&self, tags: &[S]) -> u64 {
        let tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_string()).collect();
        self.invalidate_tags(&tags, None)
            .await
            .map_or(0, |counts| counts.iter().sum())
    }

    /// Invalidates `tags` when the caller has already recorded the
    /// invalidation in the shared journal as entry `journal_id` (a service
    /// writes it in the same database transaction as the event that caused
    /// it). Returns how many entries were under the tags (as
    /// [`invalidate_by_tags`](Self::invalidate_by_tags) does) if the store
    /// took it now, so the caller may mark its entry applied; `None` if it
    /// could not, in which case the entry stays pending for the maintenance
    /// task, which applies it before reads resume. Logs at DEBUG only.
    pub async fn invalidate_recorded<S: AsRef<str>>(
        &self,
        tags: &[S],
        journal_id: i64,
    ) -> Option<u64> {
        let tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_string()).collect();
        self.invalidate_tags(&tags, Some(journal_id))
            .await
            .map(|counts| counts.iter().sum())
    }

    /// Counts per tag, or `None` when journaled; each tag logged at DEBUG.
    async fn invalidate_tags(&self, tags: &[String], journal_id: Option<i64>) -> Option<Vec<u64>> {
        let counts = self
            .inner
            .invalidate(
                PendingInvalidation::Tags {
                    tags: tags.to_vec(),
                },
                journal_id,
            )
            .await;
        Counters::add(&self.inner.counters.invalidations, 1);
        log_invalidated(tags, counts.as_deref());
        counts
    }

    /// Deletes the entries whose keys match the Redis-style `glob`, only
    /// under this cache's prefix. Returns how many were deleted.
    pub async fn clear_pattern(&self, glob: &str) -> u64 {
        self.inner
            .invalidate(
                PendingInvalidation::Pattern {
                    pattern: glob.to_string(),
                },
                None,
            )
            .await
            .map_or(0, |counts| counts.iter().sum())
    }

    /// Deletes everything under this cache's prefix (never FLUSHDB).
    pub async fn flush_all(&self) -> u64 {
        self.inner
            .invalidate(PendingInvalidation::FlushAll, None)
            .await
            .map_or(0, |counts| counts.iter().sum())
    }

    /// Pre-populates many entries at once: one pipeline, not one round trip
    /// per entry. Returns how many were stored.
    pub async fn warm<T, I>(&self, entries: I) -> u64
    where
        T: Serialize,
        I: IntoIterator<Item = (String, T, SetOptions)>,
    {
        let inner = &self.inner;
        let mut batch = Vec::new();
        for (key, value, options) in entries {
            if let Some(encoded) = inner.encode(&key, &value) {
                let ttl = options.ttl.unwrap_or(inner.config.default_ttl);
                batch.push((key, encoded, ttl, options.tags));
            }
        }
        let stored = match &inner.store {
            Store::Embedded(store) => {
                let mut stored = 0;
                for (key, encoded, ttl, tags) in batch {
                    stored += u64::from(store.set(&key, encoded.bytes, ttl, &tags, None).await);
                }
                stored
            }
            Store::Redis(store) => {
                let keys = batch.iter().map(|(key, ..)| key.clone()).collect();
                let entries: Vec<_> = batch
                    .into_iter()
                    .map(|(key, encoded, ttl, tags)| (key, encoded.bytes, ttl, tags))
                    .collect();
                // A pipeline of many entries gets a budget in proportion.
                let budget = inner.config.op_timeout * (1 + entries.len() as u32 / 500);
                let stored = inner
                    .redis_call(budget, store.set_many(&entries))
                    .await
                    .unwrap_or(0);
                // After the write, as for `set`: a read that fills an L1
                // from Redis before the write is fenced by this.
                inner.replaced(keys).await;
                stored
            }
        };
        Counters::add(&inner.counters.sets, stored);
        stored
    }

    /// The pub/sub service (SPEC 3): on Redis, or in process when embedded.
    pub fn pubsub(&self) -> &PubSub {
        &self.inner.pubsub
    }

    /// Applies the pending-invalidation journal now (the maintenance task
    /// also does so at every `journal_interval`). Returns false if some
    /// entries could not be applied yet.
    pub async fn apply_journal(&self) -> bool {
        self.inner.apply_journal().await
    }

    pub async fn stats(&self) -> CacheStats {
        let inner = &self.inner;
        let (figures, circuit) = match &inner.store {
            Store::Embedded(store) => {
                let figures = ServerFigures {
                    memory_used: crate::stats::human_bytes(store.weighted_size().await),
                    evicted_keys: store.evicted().await,
                    key_count: store.entry_count().await,
                    masters: Vec::new(),
                };
                (figures, "none")
            }
            Store::Redis(store) => {
                let circuit = if inner.breaker.is_open() {
                    "open"
                } else {
                    "closed"
                };
                // Counting keys SCANs the keyspace: give it more than one call's budget.
                let budget = inner.config.op_timeout * crate::invalidation::SCAN_BUDGET;
                let figures = match inner.redis_call(budget, store.info()).await {
                    Ok(info) => ServerFigures {
                        memory_used: info.used_memory_human,
                        evicted_keys: info.evicted_keys,
                        key_count: info.key_count,
                        masters: info.masters,
                    },
                    Err(_) => ServerFigures {
                        memory_used: "unavailable".to_string(),
                        ..ServerFigures::default()
                    },
                };
                (figures, circuit)
            }
        };
        inner
            .counters
            .snapshot(figures, circuit, self.backend_name())
    }

    /// What the cache has learned of its workload, per stats group, and
    /// the settings it suggests (`insights/`). In process only: no round
    /// trip.
    pub fn insights(&self) -> crate::InsightsReport {
        let inner = &self.inner;
        inner.insights.report(&inner.counters.group_counts())
    }
}

impl Inner {
    /// Runs one Redis call under the fail-open policy.
    pub(crate) async fn redis_call<T>(
        &self,
        budget: Duration,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.breaker.is_open() {
            Counters::add(&self.counters.skipped, 1);
            return Err(StoreError::CircuitOpen);
        }
        let result = match tokio::time::timeout(budget, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout),
        };
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(StoreError::Unsupported(why)) => {
                warn!("{why}: not cached");
            }
            // Undecodable data is not a sign that Redis is unwell.
            Err(StoreError::Codec(e)) => {
                Counters::add(&self.counters.errors, 1);
                warn!(error = %e, "unreadable cache entry: treated as a miss");
            }
            Err(e) => {
                Counters::add(&self.counters.errors, 1);
                debug!(error = %e, "redis call failed");
                if self.breaker.record_failure() {
                    error!("Redis connection error: {e}; skipping Redis until it answers again");
                    self.wake.notify_one();
                }
            }
        }
        result
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.config.op_timeout
    }

    /// The encoded value under `key`, counting the hit or miss. `get` passes
    /// no tags: L1 is looked at, then Redis. `remember` passes its tags, after
    /// looking at L1 itself: a Redis hit then fills L1 for the entry's
    /// remaining TTL.
    pub(crate) async fn fetch(&self, key: &str, fill_tags: Option<&[String]>) -> Option<Bytes> {
        match self.look(key, fill_tags).await {
            Some((value, tier)) => {
                self.note_hit(key, tier);
                Some(value)
            }
            None => {
                self.note_miss(key);
                None
            }
        }
    }

    /// Counts a hit, for the stats and the insights. An in-process hit has
    /// marked its entry read already; one from Redis marks it here (a map
    /// lookup, against a round trip).
    pub(crate) fn note_hit(&self, key: &str, tier: Tier) {
        self.counters.hit(key, tier);
        if tier == Tier::L2 {
            self.insights.read_remote(key);
        }
        if insights::sampled() {
            self.insights.subject(key, Read::Hit, insights::SAMPLE);
        }
    }

    pub(crate) fn note_miss(&self, key: &str) {
        self.counters.miss(key);
        self.insights.missed(key);
    }

    /// A graced read served a value `age` old.
    pub(crate) fn note_stale(&self, key: &str, age: Duration) {
        self.counters.stale(key, age);
        self.insights.subject(key, Read::Stale, 1);
    }

    /// [`fetch`](Self::fetch) without counting: the value and the tier it
    /// came from.
    pub(crate) async fn look(
        &self,
        key: &str,
        fill_tags: Option<&[String]>,
    ) -> Option<(Bytes, Tier)> {
        if !valid_key(key) {
            return None;
        }
        if fill_tags.is_none()
            && let Some(l1) = &self.l1
            && let Some(value) = l1.get(key).await
        {
            return Some((value, Tier::L1));
        }
        match &self.store {
            Store::Embedded(store) => store.get(key).await.map(|v| (v, Tier::L1)),
            Store::Redis(store) => match (&self.l1, fill_tags) {
                (Some(l1), Some(tags)) if l1.holds_entries() => {
                    // Versions taken before the read: see l1.rs.
                    let seen = l1.fence(tags);
                    self.hooks.reach(Step::ReadAfterSnapshot).await;
                    let (read, ttl) = tokio::join!(
                        self.redis_call(self.op_timeout(), store.get_for_fill(key, tags)),
                        self.redis_call(self.op_timeout(), store.pttl(key)),
                    );
                    let read = read.ok().flatten();
                    self.hooks.reach(Step::ReadBeforeFill).await;
                    if let (Some(read), Ok(Some(ttl))) = (&read, ttl)
                        // Held under the entry's own tags only: under the
                        // caller's, an invalidation of the entry's would miss it.
                        && read.same_tags
                    {
                        l1.fill(key, read.value.clone(), ttl, tags, seen, None)
                            .await;
                    }
                    read.map(|r| (r.value, Tier::L2))
                }
                _ => self
                    .redis_call(self.op_timeout(), store.get(key))
                    .await
                    .ok()
                    .flatten()
                    .map(|v| (v, Tier::L2)),
            },
        }
    }

    /// The fence of `tags` now: what a fill or a joining caller must find
    /// unchanged (`fence.rs`).
    pub(crate) fn fence(&self, tags: &[String]) -> Fence {
        match (&self.store, &self.l1) {
            (Store::Embedded(store), _) => Fence::new(store.snapshot(tags), &self.keys),
            (Store::Redis(_), Some(l1)) => l1.fence(tags),
            // Every Redis-backed cache has its fence cells in `l1`.
            (Store::Redis(_), None) => Fence::new(Box::new([]), &self.keys),
        }
    }

    /// `remember`'s second look; `None` when the store is unreachable.
    pub(crate) async fn lookup(&self, key: &str, tags: &[String], ttl: Duration) -> Option<Lookup> {
        if !valid_key(key) {
            return None;
        }
        match &self.store {
            Store::Embedded(store) => Some(store.lookup(key, tags).await),
            Store::Redis(store) => self
                .redis_call(self.op_timeout(), store.lookup(key, tags, ttl))
                .await
                .ok(),
        }
    }

    /// `value` as the JSON a caller gets and as the cache stores it (None
    /// if it cannot be stored); the JSON is a slice of the stored bytes
    /// when they are not compressed.
    pub(crate) fn encode_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> (CachedJson, Option<Encoded>) {
        let encoded = self.encode(key, value);
        let json = match &encoded {
            Some(encoded) => json_of(key, &encoded.bytes),
            None => None,
        }
        .unwrap_or_else(|| {
            let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
            let digest = codec::digest(&bytes);
            CachedJson { bytes, digest }
        });
        (json, encoded)
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Option<Encoded> {
        // Compression saves Redis memory and bandwidth; in process it would
        // only cost a decompression on every hit.
        let threshold = match self.store {
            Store::Embedded(_) => usize::MAX,
            Store::Redis(_) => self.config.compression_threshold,
        };
        match codec::encode(value, threshold) {
            Ok(encoded) => Some(encoded),
            Err(e) => {
                error!(key, error = %e, "value not cached");
                None
            }
        }
    }

    pub(crate) async fn store_encoded(
        &self,
        key: &str,
        encoded: &Encoded,
        ttl: Duration,
        tags: &[String],
        expected: Option<Versions>,
        read: Option<&ReadMark>,
    ) -> bool {
        if !valid_key(key) {
            warn!(
                key,
                "cache keys may not be empty or begin with '~': not stored"
            );
            return false;
        }
        let stored = match (&self.store, expected) {
            (Store::Embedded(store), expected) => {
                let seen = match expected {
                    Some(Versions::Embedded(seen)) => Some(seen),
                    _ => None,
                };
                store
                    .set_marked(key, encoded.bytes.clone(), ttl, tags, seen, read.cloned())
                    .await
            }
            (Store::Redis(store), expected) => {
                let expected = match &expected {
                    Some(Versions::Redis(v)) => Some(v.as_slice()),
                    _ => None,
                };
                self.redis_call(
                    self.op_timeout(),
                    store.set(key, &encoded.bytes, ttl, tags, expected),
                )
                .await
                .unwrap_or(false)
            }
        };
        if stored {
            Counters::add(&self.counters.sets, 1);
            Counters::add(&self.counters.compression_saved, encoded.saved);
        }
        stored
    }
}

/// The line operators of the reference design grep for, one per tag, at
/// DEBUG (see [`Cache::invalidate_by_tag`] for the operator's own, at INFO).
fn log_invalidated(tags: &[String], counts: Option<&[u64]>) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    match counts {
        Some(counts) => {
            for (tag, n) in tags.iter().zip(counts) {
                debug!("Invalidated {n} cache entries for tag: {tag}");
            }
        }
        None => {
            for tag in tags {
                debug!("Invalidation of tag: {tag} journaled until Redis answers");
            }
        }
    }
}

pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.starts_with('~')
}

/// The JSON of an encoded value (a slice of it when stored plain) and its digest.
pub(crate) fn json_of(key: &str, encoded: &Bytes) -> Option<CachedJson> {
    match codec::json_and_digest(encoded) {
        Ok((bytes, digest)) => Some(CachedJson { bytes, digest }),
        Err(e) => {
            warn!(key, error = %e, "cached value unreadable: treated as a miss");
            None
        }
    }
}

pub(crate) fn decode_or_warn<T: DeserializeOwned>(key: &str, encoded: &[u8]) -> Option<T> {
    match codec::decode(encoded) {
        Ok(value) => Some(value),
        Err(e) => {
            warn!(key, error = %e, "cached value unreadable: treated as a miss");
            None
        }
    }
}
