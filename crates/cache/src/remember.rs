//! `remember`: cache-or-load, with one loader per missing key in a process
//! (`flight.rs`) and one per expiry across processes (`lock.rs`), and
//! without storing a value that an invalidation overtook (SPEC 1.2.3, 1.2.4,
//! 1.2.13).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, CachedJson, Origin, decode_or_warn, json_of};
use crate::codec::{self, Encoded};
use crate::error::StoreError;
use crate::flight::{self, Role};
use crate::insights::lives::ReadMark;
use crate::lock::Lease;
use crate::stats::{Counters, Tier};
use crate::store::{Lookup, Store, Versions};
use crate::testing::Step;

impl Cache {
    /// Cache-or-load: the cached value if there is one, otherwise the
    /// loader's, stored under `tags` for `ttl`.
    ///
    /// - Concurrent calls on one missing key in this process run the loader
    ///   once; the others get its value. A call that arrives after an
    ///   invalidation of one of `tags` does not join a load that began
    ///   before it.
    /// - If one of `tags` is invalidated while the loader runs, the result is
    ///   returned to the callers but not stored (it may be stale).
    /// - The loader's error is returned as is; the cache never adds one of
    ///   its own (with the store unreachable, every call runs the loader).
    ///   Callers waiting on a loader that failed try again themselves.
    pub async fn remember<T, E, F, Fut, S>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[S],
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: AsRef<str>,
    {
        let decode = |encoded: &Bytes| decode_or_warn::<T>(key, encoded);
        let load = || async {
            let value = loader().await?;
            let encoded = self.inner.encode(key, &value);
            Ok((value, encoded))
        };
        let (value, _) = self.remember_with(key, ttl, tags, decode, load).await?;
        Ok(value)
    }

    /// [`remember`](Self::remember) for callers that pass the JSON on as
    /// is (an HTTP response body): no deserialization on a hit, the JSON's
    /// digest, and the [`Origin`] of the value.
    pub async fn remember_json<T, E, F, Fut, S>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[S],
        loader: F,
    ) -> Result<(CachedJson, Origin), E>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        S: AsRef<str>,
    {
        let decode = |encoded: &Bytes| json_of(key, encoded);
        let load = || async {
            let value = loader().await?;
            Ok(self.inner.encode_json(key, &value))
        };
        self.remember_with(key, ttl, tags, decode, load).await
    }

    /// The one cache-or-load path: `decode` turns a cached value into the
    /// result (or rejects it, which counts as a miss), `load` produces the
    /// result and its encoding (None if it cannot be cached).
    async fn remember_with<R, E, S, D, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[S],
        decode: D,
        load: F,
    ) -> Result<(R, Origin), E>
    where
        S: AsRef<str>,
        D: Fn(&Bytes) -> Option<R>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(R, Option<Encoded>), E>>,
    {
        let inner = &self.inner;
        // The hottest path: no allocation, no lock, no round trip.
        if let Some(l1) = &inner.l1
            && let Some(value) = l1.get(key).await.and_then(|e| decode(&e))
        {
            inner.note_hit(key, Tier::L1);
            return Ok((value, Origin::Cache));
        }
        let embedded = matches!(inner.store, Store::Embedded(_));
        if embedded && let Some(value) = inner.fetch(key, None).await.and_then(|e| decode(&e)) {
            return Ok((value, Origin::Cache));
        }
        let tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_string()).collect();
        if !embedded
            && let Some(value) = inner.fetch(key, Some(&tags)).await.and_then(|e| decode(&e))
        {
            return Ok((value, Origin::Cache));
        }
        self.fill(key, ttl, tags, decode, load).await
    }

    /// The miss path of [`remember_with`](Self::remember_with): one loader
    /// per key in this process and per expiry across processes, its result
    /// stored unless an invalidation overtook it. A graced entry's
    /// background refresh starts here (it is not a read: nothing is counted
    /// as a hit or a miss).
    pub(crate) async fn fill<R, E, D, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: Vec<String>,
        decode: D,
        load: F,
    ) -> Result<(R, Origin), E>
    where
        D: Fn(&Bytes) -> Option<R>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(R, Option<Encoded>), E>>,
    {
        let inner = &self.inner;
        // The fence is taken before the loader runs: it keeps later callers
        // out of this load, and keeps its result out of L1, once an
        // invalidation of the tags begins.
        let (leader, fence) = loop {
            let fence = inner.fence(&tags);
            match inner.flights.join(key, || fence.clone()) {
                Role::Leader(guard) => break (guard, fence),
                Role::Waiter(rx) => {
                    if let Some(value) = flight::wait(rx).await.and_then(|e| decode(&e)) {
                        return Ok((value, Origin::Flight));
                    }
                }
            }
        };
        // Another caller may have stored the value since our first look; and
        // on a miss this takes the tags' versions before the loader runs.
        let versions = match inner.lookup(key, &tags, ttl).await {
            Some(Lookup::Hit(encoded)) => {
                if let Some(value) = decode(&encoded) {
                    leader.complete(encoded);
                    return Ok((value, Origin::Cache));
                }
                None
            }
            Some(Lookup::Miss(versions)) => Some(versions),
            None => None,
        };

        // Across processes: one loader per expiry (see lock.rs).
        let mut lease = None;
        if let (Store::Redis(store), Some(waiters), Some(Versions::Redis(seen))) =
            (&inner.store, &inner.fill_waiters, &versions)
        {
            let landed = waiters.wait(key);
            let token: u64 = rand::random();
            let generation = codec::digest(seen.concat().as_bytes());
            let budget = inner.op_timeout();
            let lease_time = inner.config.lock_lease;
            match inner
                .redis_call(budget, store.try_lock(key, generation, token, lease_time))
                .await
            {
                Ok(true) => {
                    drop(landed);
                    waiters.forget(key);
                    let held = Lease::new(inner, key, generation, token);
                    // Another instance may have stored the value and given
                    // the lease back between our lookup and now.
                    if let Ok(Some(encoded)) = inner.redis_call(budget, store.get(key)).await
                        && let Some(value) = decode(&encoded)
                    {
                        held.release().await;
                        leader.complete(encoded);
                        return Ok((value, Origin::Cache));
                    }
                    lease = Some(held);
                }
                Ok(false) => {
                    // Until the value lands, within the lease; not past the
                    // breaker opening: the announcement could not come then,
                    // and this caller would load itself anyway (lock.rs).
                    tokio::select! {
                        _ = tokio::time::timeout(inner.config.lock_lease, landed) => {}
                        _ = inner.breaker.opened() => {}
                    }
                    waiters.forget(key);
                    if let Some(encoded) = inner.fetch(key, Some(&tags)).await
                        && let Some(value) = decode(&encoded)
                    {
                        leader.complete(encoded);
                        return Ok((value, Origin::Flight));
                    }
                    // The other loader failed or was too slow: load here.
                }
                Err(StoreError::CircuitOpen) => {
                    // Never sent: there is no lease to give back.
                    drop(landed);
                    waiters.forget(key);
                }
                Err(_) => {
                    // The lease may have been taken even though the reply
                    // was lost: release it (by token) and announce anyway.
                    lease = Some(Lease::new(inner, key, generation, token));
                    drop(landed);
                    waiters.forget(key);
                }
            }
        }

        Counters::add(&inner.counters.loader_runs, 1);
        let born = Instant::now();
        let loaded = load().await;
        inner.hooks.reach(Step::LoaderDone).await;
        let (value, encoded) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                if let Some(lease) = lease {
                    lease.release().await;
                }
                return Err(e);
            }
        };
        if let Some(encoded) = encoded {
            inner
                .insights
                .loaded(key, born.elapsed(), encoded.bytes.len());
            let read = ReadMark::default();
            if let Some(versions) = versions
                && inner
                    .store_encoded(key, &encoded, ttl, &tags, Some(versions), Some(&read))
                    .await
            {
                if let Some(l1) = &inner.l1 {
                    let mark = Some(read.clone());
                    l1.fill(key, encoded.bytes.clone(), ttl, &tags, fence, mark)
                        .await;
                }
                inner.insights.stored(key, &tags, ttl, born, read);
            }
            leader.complete(encoded.bytes);
        }
        if let Some(lease) = lease {
            lease.release().await;
        }
        Ok((value, Origin::Loader))
    }
}
