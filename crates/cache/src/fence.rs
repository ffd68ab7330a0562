//! Fences: what a write into the in-process tier, or a caller joining a
//! load already under way, must find unchanged since the versions were
//! taken (SPEC 1.2.3 and 1.2.13).
//!
//! A fence holds the versions of some tags' cells (see `store/embedded.rs`;
//! one cell stands for "everything" and is bumped by a flush) and the count
//! of key invalidations at the time it was taken. Every invalidation this
//! process learns of, whatever its source (its own, another instance's bus
//! message, the journal, an emptying after a lost subscription), bumps the
//! cells of its tags, or the key count, before it takes effect: a fence
//! taken before it no longer holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::embedded::{TagVersion, all_current};

/// Key invalidations (`set` over a key, `delete`, patterns) in this process:
/// one counter for all keys, so any of them breaks every fence then taken
/// (a few extra misses, in exchange for no per-key bookkeeping).
#[derive(Debug, Default)]
pub(crate) struct KeyInvalidations(AtomicU64);

impl KeyInvalidations {
    /// Called before the keys are deleted.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
pub(crate) struct Fence {
    pub tags: Box<[TagVersion]>,
    pub keys: Arc<KeyInvalidations>,
    pub keys_seen: u64,
}

impl Fence {
    pub fn new(tags: Box<[TagVersion]>, keys: &Arc<KeyInvalidations>) -> Fence {
        Fence {
            keys_seen: keys.now(),
            keys: keys.clone(),
            tags,
        }
    }

    /// True while no invalidation of its tags or of any key has begun since.
    pub fn holds(&self) -> bool {
        self.keys_unchanged() && all_current(&self.tags)
    }

    pub fn keys_unchanged(&self) -> bool {
        self.keys.now() == self.keys_seen
    }
}
