//! Expire by tag (SPEC 7): an entry read with a grace is served stale, for
//! at most that grace, once an invalidation has removed it, while one
//! refresh runs in the background.
//!
//! How: every load of a graced entry also stores a *grace copy* under
//! `<key>~stale`: the value and the time its loader started, with no tags
//! and a TTL of what is left of the grace. Invalidation by tag is left
//! exactly as it is (the entry itself is gone at once: properties 1–13 hold
//! for it unchanged); only a graced read, finding the entry gone, looks at
//! the copy. So:
//!
//! - **Staleness is bounded by the grace, measured from the loader's
//!   start.** A value reflects the database as it was when its loader
//!   started; the copy is served only while `now - started <= grace`
//!   (checked on the copy's own timestamp at every read, not only by its
//!   TTL: whatever Redis does with TTLs, a restore from an older snapshot
//!   included, the bound holds). The bound is on the age of the data,
//!   which bounds how long it has been stale.
//! - **The stale answer does not wait.** The refresh is spawned; the
//!   reader returns with the copy at once.
//! - **One refresh per key**: one per process (the set of keys being
//!   refreshed), one per expiry across processes (the same lease as
//!   `remember`'s, `lock.rs`); its result is stored under the same fences
//!   as any fill, so a refresh overtaken by an invalidation stores no entry
//!   (a grace copy, which is only ever read as stale, it does store).
//! - **Past the grace, a miss**: the copy is too old (or gone), the reader
//!   loads as `remember` does, under the same stampede protection.
//!
//! Counted: a stale serve is neither a hit nor a miss (`stale`, and the age
//! of what was served, in the stats); a background refresh is a load
//! (`loaderRuns`), not a read.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tracing::debug;

use crate::cache::{Cache, CachedJson, Origin, valid_key};
use crate::codec::Encoded;
use crate::journal::now_ms;

/// The suffix of a grace copy's key.
const COPY_SUFFIX: &str = "~stale";

/// The keys whose refresh is under way in this process.
#[derive(Default)]
pub(crate) struct Refreshing(Mutex<HashSet<String>>);

impl Refreshing {
    /// Claims `key`'s refresh; false if one is already under way.
    fn claim(&self, key: &str) -> bool {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(key.to_string())
    }

    fn done(&self, key: &str) {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(key);
    }
}

/// Gives the claim back however the refresh task ends (a panic included).
struct Claim<'a> {
    refreshing: &'a Refreshing,
    key: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.refreshing.done(self.key);
    }
}

impl Cache {
    /// [`remember_json`](Self::remember_json) with a grace: once an
    /// invalidation has removed the entry, a read within `grace` of the
    /// start of the load that produced the previous value gets that value
    /// at once ([`Origin::Stale`], with its age), while one refresh runs in
    /// the background; past the grace it is a miss. A zero `grace` is
    /// `remember_json`.
    ///
    /// The loader is `'static`: it may run in the background, after this
    /// call has returned.
    pub async fn remember_json_graced<T, E, F, Fut, S>(
        &self,
        key: &str,
        ttl: Duration,
        grace: Duration,
        tags: &[S],
        loader: F,
    ) -> Result<(CachedJson, Origin), E>
    where
        T: Serialize + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        S: AsRef<str>,
    {
        if grace.is_zero() || !valid_key(key) {
            return self.remember_json(key, ttl, tags, loader).await;
        }
        let inner = &self.inner;
        let tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_string()).collect();
        // The entry itself, as `remember` looks for it (and counted so).
        if let Some(l1) = &inner.l1
            && let Some(json) = l1
                .get(key)
                .await
                .and_then(|e| crate::cache::json_of(key, &e))
        {
            inner.note_hit(key, crate::stats::Tier::L1);
            return Ok((json, Origin::Cache));
        }
        let fill_tags = inner.l1.as_ref().map(|_| tags.as_slice());
        if let Some((encoded, tier)) = inner.look(key, fill_tags).await
            && let Some(json) = crate::cache::json_of(key, &encoded)
        {
            inner.note_hit(key, tier);
            return Ok((json, Origin::Cache));
        }
        // Gone: the grace copy, if it is young enough.
        let copy_key = copy_key(key);
        if let Some((copy, _)) = inner.look(&copy_key, None).await
            && let Some((started, json)) = read_copy(key, &copy)
        {
            let age = Duration::from_millis(now_ms().saturating_sub(started).max(0) as u64);
            if age <= grace {
                inner.note_stale(key, age);
                self.refresh(key, ttl, grace, tags, loader);
                return Ok((json, Origin::Stale { age }));
            }
        }
        inner.note_miss(key);
        self.fill_graced(key.to_string(), ttl, grace, tags, loader)
            .await
    }

    /// Starts the background refresh of `key`, unless one is under way in
    /// this process.
    fn refresh<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        grace: Duration,
        tags: Vec<String>,
        loader: F,
    ) where
        T: Serialize + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if !self.inner.refreshing.claim(key) {
            return;
        }
        let cache = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let _claim = Claim {
                refreshing: &cache.inner.refreshing,
                key: &key,
            };
            crate::stats::Counters::add(&cache.inner.counters.refreshes, 1);
            if cache
                .fill_graced(key.clone(), ttl, grace, tags, loader)
                .await
                .is_err()
            {
                debug!(key, "a graced entry's refresh failed: the grace copy stays");
            }
        });
    }

    /// `fill` whose load also stores the grace copy.
    async fn fill_graced<T, E, F, Fut>(
        &self,
        key: String,
        ttl: Duration,
        grace: Duration,
        tags: Vec<String>,
        loader: F,
    ) -> Result<(CachedJson, Origin), E>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.inner.insights.graced(&key, grace);
        let decode = |encoded: &Bytes| crate::cache::json_of(&key, encoded);
        let load = || async {
            let started = now_ms();
            let value = loader().await?;
            let (json, encoded) = self.inner.encode_json(&key, &value);
            if let Some(encoded) = &encoded {
                self.store_copy(&key, started, encoded, grace).await;
            }
            Ok((json, encoded))
        };
        self.fill(&key, ttl, tags, decode, load).await
    }

    /// Stores the grace copy of a value whose loader started at `started`,
    /// for what is left of the grace.
    async fn store_copy(&self, key: &str, started: i64, encoded: &Encoded, grace: Duration) {
        let elapsed = Duration::from_millis(now_ms().saturating_sub(started).max(0) as u64);
        let Some(left) = grace.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            return;
        };
        let mut bytes = BytesMut::with_capacity(8 + encoded.bytes.len());
        bytes.put_i64(started);
        bytes.put_slice(&encoded.bytes);
        let copy = Encoded {
            bytes: bytes.freeze(),
            saved: 0,
        };
        self.inner
            .store_encoded(&copy_key(key), &copy, left, &[], None, None)
            .await;
    }
}

pub(crate) fn copy_key(key: &str) -> String {
    let mut copy = String::with_capacity(key.len() + COPY_SUFFIX.len());
    copy.push_str(key);
    copy.push_str(COPY_SUFFIX);
    copy
}

/// A grace copy's loader start (epoch ms) and JSON.
fn read_copy(key: &str, copy: &Bytes) -> Option<(i64, CachedJson)> {
    let started = i64::from_be_bytes(copy.get(..8)?.try_into().ok()?);
    let json = crate::cache::json_of(key, &copy.slice(8..))?;
    Some((started, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_carries_its_start_and_its_json() {
        let encoded = crate::codec::encode(&vec![1, 2, 3], usize::MAX).unwrap();
        let mut bytes = BytesMut::new();
        bytes.put_i64(1_700_000_000_123);
        bytes.put_slice(&encoded.bytes);
        let (started, json) = read_copy("k", &bytes.freeze()).unwrap();
        assert_eq!(started, 1_700_000_000_123);
        assert_eq!(&json.bytes[..], b"[1,2,3]");
        assert!(read_copy("k", &Bytes::from_static(b"short")).is_none());
        assert_eq!(
            copy_key("analytics:ghosts:1:all"),
            "analytics:ghosts:1:all~stale"
        );
    }
}
