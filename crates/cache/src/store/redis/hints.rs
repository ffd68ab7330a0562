//! Which tags an entry was last seen stored under, so that a read can fetch
//! the entry *and* its tags' markers in one round trip, a pipelined
//! `GET entry` + `MGET markers`, instead of running a script.
//!
//! Why not a script: on the hit path a Lua script costs Redis about 3.5 µs
//! of fixed overhead per call even when it only does one `GET` (EVALSHA set-up,
//! `KEYS`/`ARGV` tables, `redis.call` through a fake client), 30 times a plain
//! `GET`. `GET` + `MGET` costs Redis two plain commands.
//!
//! A hint is only a guess, never trusted: the entry's envelope names its tags
//! and the versions they had when it was written, and a read returns the entry
//! only if the envelope's tags are the hinted ones and every marker read has
//! the recorded version. Otherwise (no hint yet, or the tags changed) the read
//! asks for the markers of the envelope's own tags in a second round trip.
//!
//! Why reading the markers after the entry, outside a script, is safe: Redis
//! runs one connection's commands in order, so the `MGET` runs after the
//! `GET`, and both after any invalidation that returned before the read
//! began. Such an invalidation deleted the marker; a marker created since has
//! a fresh random version, never the one an older entry recorded. So an entry
//! written before the invalidation always fails the check.
//!
//! Invalidations made by this process make the hints of their tags
//! *suspect* ([`TagEpochs`]). A suspect read first asks only for the markers:
//! if one is gone, no entry recorded under the current version of that tag
//! exists, and the read is a miss without fetching the (stale) value at all.
//! That is exact whatever the hint says: an entry that recorded a version of a
//! tag whose marker is gone is stale. (If the entry was written again since
//! under other tags, the miss is a false one; the hint is dropped, so it
//! happens once.) Otherwise the read proceeds as usual and refreshes the hint.
//!
//! Bounded: a fixed number of slots, in buckets of [`WAYS`] chosen by key
//! hash (a key arriving in a full bucket replaces one of its hints in turn),
//! each holding one key's name and its tags.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::codec::Envelope;

pub(crate) struct Hint {
    /// The entry's Redis key.
    key: Box<str>,
    tags: Box<[Box<[u8]>]>,
    /// The markers' Redis keys, in the order of `tags`.
    pub markers: Box<[String]>,
    /// Each tag's slot in [`TagEpochs`] and the slot's count when the hint
    /// was made.
    epochs: Box<[(usize, u64)]>,
}

impl Hint {
    pub fn new<T: AsRef<[u8]>>(
        key: &str,
        tags: &[T],
        marker_prefix: &str,
        epochs: &TagEpochs,
    ) -> Hint {
        let markers = tags
            .iter()
            .map(|tag| {
                let tag = String::from_utf8_lossy(tag.as_ref());
                let mut marker = String::with_capacity(marker_prefix.len() + tag.len() + 1);
                marker.push_str(marker_prefix);
                marker.push_str(&tag);
                marker.push('}');
                marker
            })
            .collect();
        Hint {
            key: key.into(),
            tags: tags.iter().map(|t| t.as_ref().into()).collect(),
            markers,
            epochs: tags.iter().map(|t| epochs.snapshot(t.as_ref())).collect(),
        }
    }

    pub fn from_envelope(
        key: &str,
        envelope: &Envelope,
        marker_prefix: &str,
        epochs: &TagEpochs,
    ) -> Hint {
        let tags: Vec<&[u8]> = (0..envelope.tag_count()).map(|i| envelope.tag(i)).collect();
        Hint::new(key, &tags, marker_prefix, epochs)
    }

    /// Has this process invalidated one of the hinted tags (or a tag sharing
    /// its slot) since the hint was made?
    pub fn is_suspect(&self, epochs: &TagEpochs) -> bool {
        self.epochs
            .iter()
            .any(|&(slot, seen)| epochs.slots[slot].load(Ordering::Acquire) != seen)
    }

    pub fn tags_are(&self, tags: &[String]) -> bool {
        self.tags.len() == tags.len()
            && self
                .tags
                .iter()
                .zip(tags)
                .all(|(a, b)| a[..] == *b.as_bytes())
    }

    /// Does the envelope name exactly the hinted tags, in the same order?
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.tags.len() == envelope.tag_count()
            && self
                .tags
                .iter()
                .enumerate()
                .all(|(i, tag)| tag[..] == *envelope.tag(i))
    }
}

/// Hints per bucket: a few keys hashing alike keep their hints, where a
/// direct-mapped table would lose about a third of them when nearly full.
const WAYS: usize = 4;

#[derive(Default)]
struct Bucket {
    hints: [Option<Arc<Hint>>; WAYS],
    /// The way the next new hint replaces when the bucket is full.
    next: usize,
}

pub(crate) struct Hints {
    buckets: Box<[Mutex<Bucket>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Hints {
    /// About `capacity` hints (rounded up to a power of two); 0 keeps none.
    pub fn new(capacity: usize) -> Hints {
        let buckets = if capacity == 0 {
            0
        } else {
            capacity.div_ceil(WAYS).next_power_of_two()
        };
        Hints {
            buckets: (0..buckets).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }

    fn bucket(&self, key: &str) -> Option<std::sync::MutexGuard<'_, Bucket>> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = self.hasher.hash_one(key) as usize & (self.buckets.len() - 1);
        Some(
            self.buckets[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    pub fn get(&self, key: &str) -> Option<Arc<Hint>> {
        let bucket = self.bucket(key)?;
        bucket
            .hints
            .iter()
            .flatten()
            .find(|h| &*h.key == key)
            .cloned()
    }

    pub fn put(&self, hint: Hint) {
        let Some(mut bucket) = self.bucket(&hint.key) else {
            return;
        };
        let way = bucket
            .hints
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.key == hint.key))
            .or_else(|| bucket.hints.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let way = bucket.next;
                bucket.next = (way + 1) % WAYS;
                way
            });
        bucket.hints[way] = Some(Arc::new(hint));
    }

    pub fn remove(&self, key: &str) {
        if let Some(mut bucket) = self.bucket(key) {
            for way in bucket.hints.iter_mut() {
                if way.as_ref().is_some_and(|h| &*h.key == key) {
                    *way = None;
                }
            }
        }
    }
}

/// Counts, per tag (hashed into a fixed table), the invalidations this
/// process made, so that hints made before one are known to be suspect.
pub(crate) struct TagEpochs {
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl TagEpochs {
    const SLOTS: usize = 4096;

    pub fn new() -> TagEpochs {
        TagEpochs {
            slots: (0..Self::SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    fn slot(&self, tag: &[u8]) -> usize {
        self.hasher.hash_one(tag) as usize & (Self::SLOTS - 1)
    }

    fn snapshot(&self, tag: &[u8]) -> (usize, u64) {
        let slot = self.slot(tag);
        (slot, self.slots[slot].load(Ordering::Acquire))
    }

    /// Called before an invalidation of `tag` is sent to Redis.
    pub fn bump(&self, tag: &[u8]) {
        self.slots[self.slot(tag)].fetch_add(1, Ordering::AcqRel);
    }
}
