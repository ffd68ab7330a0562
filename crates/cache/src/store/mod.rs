//! The stores behind a [`Cache`](crate::Cache): where entries and the versions
//! of their tags live. The store does the work; the cache in front of it
//! decides what a failure means (fail-open, breaker, journal).
//!
//! Dispatch is an enum rather than a trait object: the hit path stays a
//! direct call, and each store keeps the snapshot type that suits it.

pub(crate) mod embedded;
pub(crate) mod redis;

pub use self::redis::MasterHealth;

use bytes::Bytes;

use self::embedded::TagVersion;

/// The versions of a loader's tags, taken before the loader ran.
pub(crate) enum Versions {
    Redis(Vec<String>),
    Embedded(Box<[TagVersion]>),
}

/// What `remember` finds first: the value, or the versions to store a fresh
/// one under.
pub(crate) enum Lookup {
    Hit(Bytes),
    Miss(Versions),
}

pub(crate) enum Store {
    Embedded(embedded::EmbeddedStore),
    // Boxed: the Redis store is several times the embedded one's size.
    Redis(Box<redis::RedisStore>),
}
