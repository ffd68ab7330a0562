//! The lives of the entries this process stored: when each was stored,
//! under which tags, for how long, and whether it has been read; and, once
//! an entry has ended, a *grave* (when its value was loaded and how it
//! ended), which the next miss of its key looks up.
//!
//! Bounded: at most `capacity` lives and as many graves. An entry stored
//! while the table is full (after a sweep of the lives whose TTL has run
//! out) is not tracked, and counted as such: the figures then describe a
//! sample of the entries, not all of them.
//!
//! Only entries stored by this process are tracked, and only its own reads
//! mark them read: with several instances, each reports on the entries it
//! loaded itself.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Set by the first read of an entry. Shared with the in-process store's
/// entry, so that marking an in-process hit costs one relaxed load.
pub(crate) type ReadMark = Arc<AtomicBool>;

/// Marks `mark` read; a store only after the first read, so that the
/// cache line stays shared between the cores that read the entry.
pub(crate) fn mark_read(mark: &AtomicBool) {
    if !mark.load(Ordering::Relaxed) {
        mark.store(true, Ordering::Relaxed);
    }
}

/// How a tracked entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// One of its tags, its key, or everything was invalidated.
    Invalidated,
    /// Its TTL ran out.
    Expired,
    /// This process stored the key again while it lived (after an
    /// eviction, or a `set`).
    Replaced,
}

/// An entry that ended, as the figures record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub group: usize,
    pub cause: Cause,
    /// From the store to the end (the TTL for an expiry).
    pub lifetime: Duration,
    pub read: bool,
}

/// What the miss of a key knows about its previous value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grave {
    pub group: usize,
    /// When the loader of the previous value started.
    pub born: Instant,
    pub cause: Cause,
}

struct Life {
    group: usize,
    born: Instant,
    stored: Instant,
    ttl: Duration,
    read: ReadMark,
    tags: Box<[Arc<str>]>,
}

impl Life {
    fn expires(&self) -> Instant {
        self.stored + self.ttl
    }
}

#[derive(Default)]
struct Table {
    lives: HashMap<Arc<str>, Life>,
    by_tag: HashMap<Arc<str>, HashSet<Arc<str>>>,
    graves: HashMap<Arc<str>, Grave>,
    untracked: u64,
}

/// Graves older than this are of no use: no grace worth suggesting is longer.
const GRAVE_HORIZON: Duration = Duration::from_secs(3600);

pub(crate) struct Lives {
    capacity: usize,
    table: Mutex<Table>,
}

impl Lives {
    pub fn new(capacity: usize) -> Self {
        Lives {
            capacity,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every update leaves the maps consistent between statements that
        // cannot panic: a poisoned lock holds usable data.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `key` was stored now, its loader having started at
    /// `born`. Returns what ended (the life it replaced, and the lives
    /// swept to make room), and whether it is tracked.
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        &self,
        key: &str,
        group: usize,
        tags: &[String],
        ttl: Duration,
        born: Instant,
        read: ReadMark,
        ended: &mut Vec<Ended>,
    ) -> bool {
        let now = Instant::now();
        let mut table = self.table();
        if let Some(old) = table.remove(key) {
            ended.push(old.end(Cause::Replaced, now));
        }
        if table.lives.len() >= self.capacity {
            table.sweep(now, ended);
        }
        if table.lives.len() >= self.capacity {
            table.untracked += 1;
            return false;
        }
        let key: Arc<str> = Arc::from(key);
        let tags: Box<[Arc<str>]> = tags.iter().map(|t| Arc::from(t.as_str())).collect();
        for tag in tags.iter() {
            table
                .by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.clone());
        }
        table.graves.remove(&key);
        table.lives.insert(
            key,
            Life {
                group,
                born,
                stored: now,
                ttl,
                read,
                tags,
            },
        );
        true
    }

    /// A read of `key` served by a store that does not hold the mark (Redis).
    pub fn read(&self, key: &str) {
        if let Some(life) = self.table().lives.get(key) {
            mark_read(&life.read);
        }
    }

    /// The entries under any of `tags` ended.
    pub fn tags_invalidated(&self, tags: &[String], ended: &mut Vec<Ended>) {
        let now = Instant::now();
        let mut table = self.table();
        for tag in tags {
            let Some(keys) = table.by_tag.remove(tag.as_str()) else {
                continue;
            };
            for key in keys {
                table.bury(&key, Cause::Invalidated, now, ended);
            }
        }
    }

    pub fn keys_invalidated(&self, keys: &[String], ended: &mut Vec<Ended>) {
        let now = Instant::now();
        let mut table = self.table();
        for key in keys {
            table.bury(key, Cause::Invalidated, now, ended);
        }
    }

    /// Everything ended (a flush, a pattern: rare operator actions).
    pub fn all_invalidated(&self, ended: &mut Vec<Ended>) {
        let now = Instant::now();
        let mut table = self.table();
        let keys: Vec<Arc<str>> = table.lives.keys().cloned().collect();
        for key in keys {
            table.bury(&key, Cause::Invalidated, now, ended);
        }
    }

    /// Ends the lives whose TTL has run out.
    pub fn sweep(&self, ended: &mut Vec<Ended>) {
        self.table().sweep(Instant::now(), ended);
    }

    /// The previous value of `key`, if it ended within the horizon (a
    /// life whose TTL has run out ends here, into `ended`).
    pub fn grave(&self, key: &str, ended: &mut Vec<Ended>) -> Option<Grave> {
        let mut table = self.table();
        if let Some(life) = table.lives.get(key)
            && life.expires() <= Instant::now()
        {
            // Its TTL ran out and no sweep has seen it yet.
            table.bury(key, Cause::Expired, Instant::now(), ended);
        }
        table.graves.get(key).copied()
    }

    /// Lives tracked now, and entries stored untracked since the start.
    pub fn counts(&self) -> (u64, u64) {
        let table = self.table();
        (table.lives.len() as u64, table.untracked)
    }
}

impl Table {
    fn remove(&mut self, key: &str) -> Option<Life> {
        let life = self.lives.remove(key)?;
        for tag in life.tags.iter() {
            if let Some(keys) = self.by_tag.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        Some(life)
    }

    /// Ends `key`'s life, if tracked, and keeps its grave.
    fn bury(&mut self, key: &str, cause: Cause, now: Instant, ended: &mut Vec<Ended>) {
        let Some(life) = self.remove(key) else {
            return;
        };
        // An entry whose TTL ran out before the invalidation reached it
        // ended by its TTL.
        let cause = if life.expires() <= now {
            Cause::Expired
        } else {
            cause
        };
        ended.push(life.end(cause, now));
        let grave = Grave {
            group: life.group,
            born: life.born,
            cause,
        };
        // Graves are bounded by the lives they outnumber at most twice.
        let bound = self.lives.len().max(1) * 2 + 1024;
        if self.graves.len() >= bound {
            self.graves
                .retain(|_, g| now.duration_since(g.born) < GRAVE_HORIZON);
        }
        if self.graves.len() < bound {
            self.graves.insert(Arc::from(key), grave);
        }
    }

    fn sweep(&mut self, now: Instant, ended: &mut Vec<Ended>) {
        let expired: Vec<Arc<str>> = self
            .lives
            .iter()
            .filter(|(_, life)| life.expires() <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.bury(&key, Cause::Expired, now, ended);
        }
        self.graves
            .retain(|_, g| now.duration_since(g.born) < GRAVE_HORIZON);
    }
}

impl Life {
    fn end(&self, cause: Cause, now: Instant) -> Ended {
        let lifetime = match cause {
            Cause::Expired => self.ttl,
            _ => now.duration_since(self.stored),
        };
        Ended {
            group: self.group,
            cause,
            lifetime,
            read: self.read.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_tag_invalidation_ends_its_entries_and_leaves_graves() {
        let lives = Lives::new(100);
        let mut ended = Vec::new();
        let ttl = Duration::from_secs(60);
        let mark = ReadMark::default();
        assert!(lives.stored(
            "a",
            0,
            &tags(&["g:1"]),
            ttl,
            Instant::now(),
            mark.clone(),
            &mut ended
        ));
        lives.stored(
            "b",
            1,
            &tags(&["g:2"]),
            ttl,
            Instant::now(),
            ReadMark::default(),
            &mut ended,
        );
        mark_read(&mark);
        lives.tags_invalidated(&tags(&["g:1"]), &mut ended);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].group, ended[0].cause, ended[0].read),
            (0, Cause::Invalidated, true)
        );
        assert_eq!(
            lives.grave("a", &mut ended).map(|g| g.cause),
            Some(Cause::Invalidated)
        );
        assert!(lives.grave("b", &mut ended).is_none(), "b lives");
        assert_eq!(lives.counts(), (1, 0));
        // Stored again: the grave goes.
        lives.stored(
            "a",
            0,
            &tags(&["g:1"]),
            ttl,
            Instant::now(),
            ReadMark::default(),
            &mut ended,
        );
        assert!(lives.grave("a", &mut ended).is_none());
    }

    #[test]
    fn expired_lives_are_swept_and_the_table_is_bounded() {
        let lives = Lives::new(2);
        let mut ended = Vec::new();
        let short = Duration::from_millis(1);
        lives.stored(
            "a",
            0,
            &[],
            short,
            Instant::now(),
            ReadMark::default(),
            &mut ended,
        );
        lives.stored(
            "b",
            0,
            &[],
            Duration::from_secs(60),
            Instant::now(),
            ReadMark::default(),
            &mut ended,
        );
        std::thread::sleep(Duration::from_millis(5));
        // Full: the sweep makes room by ending "a".
        let long = Duration::from_secs(60);
        assert!(lives.stored(
            "c",
            0,
            &[],
            long,
            Instant::now(),
            ReadMark::default(),
            &mut ended
        ));
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].cause, ended[0].lifetime, ended[0].read),
            (Cause::Expired, short, false)
        );
        // Full of live entries: not tracked, counted.
        assert!(!lives.stored(
            "d",
            0,
            &[],
            long,
            Instant::now(),
            ReadMark::default(),
            &mut ended
        ));
        assert_eq!(lives.counts(), (2, 1));
        assert_eq!(
            lives.grave("a", &mut ended).map(|g| g.cause),
            Some(Cause::Expired)
        );
    }
}
