//! Which tags an entry was last seen stored under, so that a read can fetch
//! the entry *and* its tags' markers in one command, `MGET entry markers...`,
//! instead of running a script.
//!
//! Why not a script: on the hit path a Lua script costs Redis about 3.5 µs
//! of fixed overhead per call even when it only does one `GET` (EVALSHA set-up,
//! `KEYS`/`ARGV` tables, `redis.call` through a fake client), 30 times a plain
//! `GET`. An `MGET` of three keys costs Redis about as much as a `GET`.
//!
//! A hint is only a guess, never trusted: the entry's envelope names its tags
//! and the versions they had when it was written, and a read returns the entry
//! only if the envelope's tags are the hinted ones and every marker read has
//! the recorded version. Otherwise (no hint yet, or the tags changed) the read
//! asks for the markers of the envelope's own tags in a second round trip.
//!
//! Why reading the markers outside a script is safe: an `MGET` reads all its
//! keys at one instant, after any invalidation that returned before the read
//! began (and when the markers come in a second round trip, they are read
//! after the entry). Such an invalidation deleted the marker; a marker created since has
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
    /// `key` hashed by [`Hints::hash`], compared before the key itself.
    key_hash: u64,
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
            key_hash: 0,
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

    /// The tags the entry was last seen stored under.
    pub fn tags(&self) -> impl Iterator<Item = &[u8]> {
        self.tags.iter().map(|t| &t[..])
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
    seed: u64,
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
            seed: rand::random(),
        }
    }

    /// A fast seeded hash (FNV-1a, then a final mix): on every read, where
    /// SipHash showed in profiles. Collisions only cost a lookup, never a
    /// wrong answer: a hint is verified against the entry.
    fn hash(&self, key: &str) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for &b in key.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        // murmur3's fmix64: every bit of `h` reaches the low bits that pick
        // the bucket (FNV-1a alone leaves keys differing in their last digits
        // in too few buckets).
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn bucket(&self, hash: u64) -> Option<std::sync::MutexGuard<'_, Bucket>> {
        if self.buckets.is_empty() {
            return None;
        }
        let index = hash as usize & (self.buckets.len() - 1);
        Some(
            self.buckets[index]
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    pub fn get(&self, key: &str) -> Option<Arc<Hint>> {
        let hash = self.hash(key);
        let bucket = self.bucket(hash)?;
        bucket
            .hints
            .iter()
            .flatten()
            .find(|h| h.key_hash == hash && &*h.key == key)
            .cloned()
    }

    pub fn put(&self, mut hint: Hint) {
        hint.key_hash = self.hash(&hint.key);
        let Some(mut bucket) = self.bucket(hint.key_hash) else {
            return;
        };
        let way = bucket
            .hints
            .iter()
            .position(|h| {
                h.as_ref()
                    .is_some_and(|h| h.key_hash == hint.key_hash && h.key == hint.key)
            })
            .or_else(|| bucket.hints.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let way = bucket.next;
                bucket.next = (way + 1) % WAYS;
                way
            });
        bucket.hints[way] = Some(Arc::new(hint));
    }

    pub fn remove(&self, key: &str) {
        let hash = self.hash(key);
        if let Some(mut bucket) = self.bucket(hash) {
            for way in bucket.hints.iter_mut() {
                if way
                    .as_ref()
                    .is_some_and(|h| h.key_hash == hash && &*h.key == key)
                {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_keeps_most_hints_up_to_its_capacity() {
        let epochs = TagEpochs::new();
        let hints = Hints::new(131_072);
        let keys: Vec<String> = (0..100_000)
            .map(|i| format!("spywatcher:read0:{i}"))
            .collect();
        for key in &keys {
            hints.put(Hint::new(
                key,
                &["read:0", "guild:7"],
                "spywatcher:~t:{",
                &epochs,
            ));
        }
        let kept = keys.iter().filter(|k| hints.get(k).is_some()).count();
        // Random placement in 4-way buckets loses about 11% at this load.
        assert!(kept >= 85_000, "kept {kept} of 100,000");
    }

    #[test]
    fn hints_turn_suspect_when_a_tag_is_invalidated_here() {
        let epochs = TagEpochs::new();
        let hint = Hint::new("k", &["a", "b"], "p~t:{", &epochs);
        assert_eq!(&hint.markers[..], ["p~t:{a}", "p~t:{b}"]);
        assert!(!hint.is_suspect(&epochs));
        epochs.bump(b"b");
        assert!(hint.is_suspect(&epochs));
    }
}
