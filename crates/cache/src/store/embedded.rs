//! The embedded store: entries in a moka cache bounded in bytes, tags as
//! shared version cells.
//!
//! An entry holds a reference to each of its tags' cells with the version it
//! was written under; invalidating a tag bumps its cell, and a read compares a
//! few atomics. No map lookup and no lock on the hit path.
//!
//! The byte bound counts what an entry really costs the process (`cost.rs`),
//! and the entries the bound pushes out are counted (`evicted`).

mod cost;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::notification::RemovalCause;

use super::{Lookup, Versions};
use crate::insights::lives::{ReadMark, mark_read};

/// The current version of one tag, shared by every entry written under it.
#[derive(Debug, Default)]
pub(crate) struct TagCell {
    version: AtomicU64,
    /// Entries written under the tag since its last invalidation (an upper bound).
    members: AtomicU64,
}

/// A tag's cell and the version an entry (or a loader's snapshot) saw.
pub(crate) type TagVersion = (Arc<TagCell>, u64);

pub(crate) fn all_current(tags: &[TagVersion]) -> bool {
    tags.iter()
        .all(|(cell, seen)| cell.version.load(Ordering::Acquire) == *seen)
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    tags: Box<[TagVersion]>,
    ttl: Duration,
    /// What holding the entry costs, in bytes ([`cost::entry_cost`]): the weigher's answer.
    cost: u32,
    /// Set by its first read, for the insights (`insights/lives.rs`).
    read: Option<ReadMark>,
}

struct PerEntryTtl;

impl Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub(crate) struct EmbeddedStore {
    entries: moka::future::Cache<String, Arc<Entry>>,
    tags: Mutex<TagRegistry>,
    /// A cell every entry and snapshot holds: bumping it (flush) makes every
    /// entry unreadable at once, and fences writes whose snapshot predates it.
    everything: Arc<TagCell>,
    /// Entries removed to keep within the byte bound (moka's
    /// `RemovalCause::Size`: evicted, or refused admission).
    evicted: Arc<AtomicU64>,
}

struct TagRegistry {
    cells: HashMap<String, Arc<TagCell>>,
    /// Size of `cells` at which cells no entry refers to are dropped.
    collect_at: usize,
}

impl Default for TagRegistry {
    fn default() -> Self {
        TagRegistry {
            cells: HashMap::new(),
            collect_at: Self::MIN_COLLECT_AT,
        }
    }
}

impl TagRegistry {
    /// Below this many cells, none is collected: a sweep would free little.
    const MIN_COLLECT_AT: usize = 1024;

    fn cell(&mut self, tag: &str) -> Arc<TagCell> {
        if let Some(cell) = self.cells.get(tag) {
            return cell.clone();
        }
        if self.cells.len() >= self.collect_at {
            self.collect_garbage();
        }
        let cell = Arc::new(TagCell::default());
        self.cells.insert(tag.to_string(), cell.clone());
        cell
    }

    /// Keeps the registry bounded by the live entries: a cell only the
    /// registry still refers to carries no entry and no load in flight, and
    /// can be forgotten (a new cell for the same tag starts a fresh version
    /// space, which no entry saw). Run when new cells have grown the map by
    /// half of what survived the last sweep: the sweep's cost is spread
    /// over those insertions, and the map holds at most 1.5 times the live
    /// cells (plus [`Self::MIN_COLLECT_AT`]), whoever creates cells (a
    /// write, or a read that takes a snapshot and never writes).
    fn collect_garbage(&mut self) {
        self.cells.retain(|_, cell| Arc::strong_count(cell) > 1);
        let live = self.cells.len();
        self.collect_at = (live + live / 2).max(Self::MIN_COLLECT_AT);
    }
}

impl EmbeddedStore {
    pub fn new(max_bytes: u64) -> Self {
        let evicted = Arc::new(AtomicU64::new(0));
        let counted = evicted.clone();
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &String, entry: &Arc<Entry>| entry.cost)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_key, _entry, cause| {
                if cause == RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        EmbeddedStore {
            entries,
            tags: Mutex::new(TagRegistry::default()),
            everything: Arc::new(TagCell::default()),
            evicted,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, TagRegistry> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single insert or retain), so poisoning is moot.
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        let entry = self.entries.get(key).await?;
        if all_current(&entry.tags) {
            if let Some(read) = &entry.read {
                mark_read(read);
            }
            Some(entry.value.clone())
        } else {
            self.entries.invalidate(key).await;
            None
        }
    }

    pub async fn lookup(&self, key: &str, tags: &[String]) -> Lookup {
        if let Some(value) = self.get(key).await {
            return Lookup::Hit(value);
        }
        Lookup::Miss(Versions::Embedded(self.snapshot(tags)))
    }

    pub fn snapshot(&self, tags: &[String]) -> Box<[TagVersion]> {
        let everything = self.everything.version.load(Ordering::Acquire);
        let mut registry = self.registry();
        std::iter::once((self.everything.clone(), everything))
            .chain(tags.iter().map(|tag| {
                let cell = registry.cell(tag);
                let version = cell.version.load(Ordering::Acquire);
                (cell, version)
            }))
            .collect()
    }

    /// Stores an entry; with `expected` (from [`lookup`](Self::lookup)), only
    /// if none of its tags was invalidated since. Even if an invalidation
    /// lands between that check and the insert, the entry carries the old
    /// versions and is never read as current.
    pub async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        names: &[String],
        expected: Option<Box<[TagVersion]>>,
    ) -> bool {
        self.set_marked(key, value, ttl, names, expected, None)
            .await
    }

    /// [`set`](Self::set) of an entry whose reads mark `read`.
    pub async fn set_marked(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        names: &[String],
        expected: Option<Box<[TagVersion]>>,
        read: Option<ReadMark>,
    ) -> bool {
        let tags = match expected {
            Some(seen) => {
                if !all_current(&seen) {
                    return false;
                }
                seen
            }
            None => self.snapshot(names),
        };
        for (cell, _) in tags.iter() {
            cell.members.fetch_add(1, Ordering::Relaxed);
        }
        let cost = cost::entry_cost(key, &value, names);
        let entry = Arc::new(Entry {
            value,
            tags,
            ttl,
            cost,
            read,
        });
        self.entries.insert(key.to_string(), entry).await;
        true
    }

    pub async fn delete_many(&self, keys: &[String]) -> u64 {
        let mut deleted = 0;
        for key in keys {
            if self.entries.remove(key).await.is_some() {
                deleted += 1;
            }
        }
        deleted
    }

    /// Returns the count of entries written under each tag since its last
    /// invalidation, in order.
    pub fn invalidate_tags(&self, tags: &[String]) -> Vec<u64> {
        let registry = self.registry();
        tags.iter()
            .map(|tag| match registry.cells.get(tag.as_str()) {
                Some(cell) => {
                    cell.version.fetch_add(1, Ordering::AcqRel);
                    cell.members.swap(0, Ordering::Relaxed)
                }
                None => 0,
            })
            .collect()
    }

    pub async fn clear_pattern(&self, pattern: &globset::GlobMatcher) -> u64 {
        let matching: Vec<String> = self
            .entries
            .iter()
            .filter(|(key, _)| pattern.is_match(key.as_str()))
            .map(|(key, _)| (*key).clone())
            .collect();
        self.delete_many(&matching).await
    }

    pub async fn flush_all(&self) -> u64 {
        self.everything.version.fetch_add(1, Ordering::AcqRel);
        self.entries.run_pending_tasks().await;
        let count = self.entries.entry_count();
        self.entries.invalidate_all();
        count
    }

    pub async fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    pub async fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
    }

    /// Entries removed to keep within the byte bound, since the start.
    pub async fn evicted(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.evicted.load(Ordering::Relaxed)
    }

    /// Tags the registry holds a cell for (live or not collected yet).
    #[cfg(test)]
    fn registered_tags(&self) -> usize {
        self.registry().cells.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn entries_pushed_out_by_the_bound_are_counted_and_nothing_else_is() {
        let store = EmbeddedStore::new(256 * 1024);
        let tags = ["guild:1".to_string()];
        store
            .set("kept", Bytes::from_static(b"v"), TTL, &tags, None)
            .await;
        store.delete_many(&["kept".to_string()]).await;
        store.invalidate_tags(&tags);
        assert_eq!(store.evicted().await, 0, "deletes are not evictions");
        for i in 0..5_000 {
            let key = format!("analytics:ghosts:1:{i}");
            store
                .set(&key, Bytes::from_static(b"[]"), TTL, &tags, None)
                .await;
        }
        let evicted = store.evicted().await;
        let held = store.entry_count().await;
        assert!(evicted > 0, "a saturated store evicts");
        assert_eq!(evicted + held, 5_000, "every write is held or counted");
        assert!(store.weighted_size().await <= 256 * 1024);
    }

    #[tokio::test]
    async fn the_tag_registry_is_bounded_by_live_entries_even_without_writes() {
        // L1 turned off takes a snapshot (a fence) for every read and never
        // writes: the cells of tags no entry holds must still be collected.
        let store = EmbeddedStore::new(1 << 20);
        store
            .set(
                "k",
                Bytes::from_static(b"v"),
                TTL,
                &["kept".to_string()],
                None,
            )
            .await;
        for i in 0..100_000 {
            drop(store.snapshot(&[format!("guild:{i}")]));
        }
        let registered = store.registered_tags();
        assert!(
            registered <= 2 * TagRegistry::MIN_COLLECT_AT,
            "{registered} cells for 1 live tag"
        );
        assert!(
            store.registry().cells.contains_key("kept"),
            "a live tag's cell stays"
        );
        assert_eq!(store.invalidate_tags(&["kept".to_string()]), vec![1]);
        assert!(store.get("k").await.is_none(), "and still invalidates");
    }
}
