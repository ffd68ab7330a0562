//! The Lua scripts behind the Redis store, loaded once per process.
//!
//! Each script that reads entries is prefixed with `envelope.lua`, so the
//! envelope check exists once in Lua. Plain reads (`get`) run no script:
//! they check the envelope in Rust (`codec::Envelope`, `hints.rs`).
//!
//! The standalone scripts touch keys they compute (tag markers) besides those
//! declared in `KEYS`: fine on a standalone Redis. On Redis Cluster the
//! markers of an entry live in other slots, so the cluster store
//! (`cluster/`) runs each operation as single-slot steps: one script per tag
//! (`tag_*.lua`; every per-tag key shares the tag's hash tag, `~t:{tag}`,
//! `~m:{tag}`, `~g:{tag}:…`), then the entry.

use redis::Script;

macro_rules! with_envelope {
    ($file:literal) => {
        concat!(include_str!("scripts/envelope.lua"), include_str!($file))
    };
}

pub(crate) struct Scripts {
    pub lookup: Script,
    pub set: Script,
    pub invalidate: Script,
    pub sweep: Script,
    pub unlock: Script,
    /// Redis Cluster's single-slot steps.
    pub tag_marker: Script,
    pub tag_set: Script,
    pub tag_invalidate: Script,
    pub unlink_stale: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            lookup: Script::new(with_envelope!("scripts/lookup.lua")),
            set: Script::new(include_str!("scripts/set.lua")),
            invalidate: Script::new(include_str!("scripts/invalidate.lua")),
            // Checks envelopes itself, reading each marker once per batch.
            sweep: Script::new(include_str!("scripts/sweep.lua")),
            unlock: Script::new(include_str!("scripts/unlock.lua")),
            tag_marker: Script::new(include_str!("scripts/tag_marker.lua")),
            tag_set: Script::new(include_str!("scripts/tag_set.lua")),
            tag_invalidate: Script::new(include_str!("scripts/tag_invalidate.lua")),
            unlink_stale: Script::new(include_str!("scripts/unlink_stale.lua")),
        }
    }
}
