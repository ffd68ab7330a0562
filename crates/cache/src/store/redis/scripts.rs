//! The Lua scripts behind the Redis store, loaded once per process.
//!
//! Each script that reads entries is prefixed with `envelope.lua`, so the
//! envelope check exists once in Lua. Plain reads (`get`) run no script:
//! they check the envelope in Rust (`codec::Envelope`, `hints.rs`).
//!
//! The scripts touch keys they compute (tag markers) besides those declared in
//! `KEYS`: fine on a standalone Redis. On Redis Cluster the markers of an
//! entry live in other slots, so a cluster store checks them from the client
//! instead; every per-tag key shares the tag's hash tag (`~t:{tag}`,
//! `~m:{tag}`) so each tag's own bookkeeping stays within one slot.

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
        }
    }
}
