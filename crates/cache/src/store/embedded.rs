//! The embedded store: entries in a moka cache bounded in bytes, tags as
//! shared version cells.
//!
//! An entry holds a reference to each of its tags' cells with the version it
//! was written under; invalidating a tag bumps its cell, and a read compares a
//! few atomics. No map lookup and no lock on the hit path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;

use super::{Lookup, Versions};

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
}

#[derive(Default)]
struct TagRegistry {
    cells: HashMap<String, Arc<TagCell>>,
    /// Writes since the registry last dropped cells no entry refers to.
    writes_since_gc: usize,
}

impl TagRegistry {
    const GC_EVERY: usize = 4096;

    fn cell(&mut self, tag: &str) -> Arc<TagCell> {
        if let Some(cell) = self.cells.get(tag) {
            return cell.clone();
        }
        let cell = Arc::new(TagCell::default());
        self.cells.insert(tag.to_string(), cell.clone());
        cell
    }

    /// Keeps the registry bounded by the live entries: a cell only the
    /// registry still refers to carries no entry and can be forgotten (a new
    /// cell for the same tag starts a fresh version space, which no entry saw).
    fn collect_garbage(&mut self) {
        self.writes_since_gc += 1;
        if self.writes_since_gc >= Self::GC_EVERY {
            self.writes_since_gc = 0;
            self.cells.retain(|_, cell| Arc::strong_count(cell) > 1);
        }
    }
}

impl EmbeddedStore {
    pub fn new(max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| {
                // Key, value, and the entry's fixed overhead: a byte bound
                // that counts what the process actually holds.
                let bytes = key.len() + entry.value.len() + 96 + entry.tags.len() * 16;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        EmbeddedStore {
            entries,
            tags: Mutex::new(TagRegistry::default()),
            everything: Arc::new(TagCell::default()),
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
        tags: &[String],
        expected: Option<Box<[TagVersion]>>,
    ) -> bool {
        let tags = match expected {
            Some(seen) => {
                if !all_current(&seen) {
                    return false;
                }
                seen
            }
            None => self.snapshot(tags),
        };
        for (cell, _) in tags.iter() {
            cell.members.fetch_add(1, Ordering::Relaxed);
        }
        self.registry().collect_garbage();
        let entry = Arc::new(Entry { value, tags, ttl });
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
}
